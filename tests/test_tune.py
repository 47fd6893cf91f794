"""`vitalflow tune`: the search space's checks, the study in SQLite (resume, a trial left RUNNING by a
dead process), pruning, best.yaml and the best model trained and registered like `vitalflow train`.

Tiny: a network of a few hundred weights, 2 epochs per trial on the 12-case `trainable_dataset`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("optuna")
pytest.importorskip("tensorflow")

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from vitalflow.cli import app  # noqa: E402
from vitalflow.errors import SpecError  # noqa: E402

TUNE = """\
train:
  task: decisions
  network: {conv_filters: [8], conv_kernel: 3, pool: 5, lstm_units: [8, 8], dense_units: 8}
  epochs: 2
  early_stopping: null
search:
  learning_rate: {log_uniform: [1.0e-3, 1.0e-2]}
  network.dropout: {uniform: [0, 0.3]}
  network.lstm_units: {choice: [[8, 8], [12, 6]]}
study_name: tiny
seed: 1
pruner: {startup_trials: 2, warmup_epochs: 2}
"""


@pytest.fixture(scope="module")
def tune_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune-config") / "tune.yaml"
    path.write_text(TUNE)
    return path


def _study(study_dir: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'study.db'}")


def _summary(trial) -> tuple:
    return trial.number, trial.state, trial.params, trial.value, trial.intermediate_values


# --- the tune config -----------------------------------------------------------------------------

def test_a_bad_search_path_is_a_one_line_error_before_any_trial(tmp_path):
    config = tmp_path / "tune.yaml"
    config.write_text(TUNE.replace("network.dropout:", "network.dropuot:"))
    result = CliRunner().invoke(app, ["tune", str(tmp_path / "no-dataset"), "--trials", "1", "--output",
                                      str(tmp_path / "study"), "--config", str(config)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "search: network.dropuot: no such train config setting (network has conv_filters" in lines[0]
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("search, message", [
    ("network.dropout: {uniform: [0, 1]}",
     r"network.dropout = 1.0 is not a valid train config \(network.dropout: Input should be less than 1\)"),
    ("batch_size: {choice: [64, 0]}", r"batch_size = 0 is not a valid train config"),
    ("learning_rate: {log_uniform: [0, 1.0e-2]}", r"log scale needs lo > 0"),
    ("learning_rate: {uniform: [1, 2], choice: [1]}", r"exactly one of"),
    ("network.dropout.x: {uniform: [0, 0.3]}", r"network.dropout.x: no such train config setting"),
])
def test_every_bound_and_choice_must_make_a_valid_train_config(tmp_path, search, message):
    from vitalflow.tune.space import load_tune_config

    config = tmp_path / "tune.yaml"
    config.write_text(f"search:\n  {search}\n")
    with pytest.raises(SpecError, match=message):
        load_tune_config(config)


def test_the_base_file_is_relative_to_the_tune_config_and_unknown_keys_are_errors(tmp_path):
    from vitalflow.tune.space import load_tune_config

    (tmp_path / "train.yaml").write_text("epochs: 3\nnetwork: {dense_units: 8}\n")
    (tmp_path / "tune.yaml").write_text("base: train.yaml\ntrain: {network: {dropout: 0.2}}\n")
    tune, base = load_tune_config(tmp_path / "tune.yaml")
    assert (base["epochs"], base["network"]["dense_units"], base["network"]["dropout"]) == (3, 8, 0.2)
    assert "learning_rate" in tune.search  # the default space
    (tmp_path / "tune.yaml").write_text("serch: {}\n")
    with pytest.raises(SpecError, match="serch: unknown key"):
        load_tune_config(tmp_path / "tune.yaml")
    (tmp_path / "tune.yaml").write_text("train: {epochz: 3}\n")
    with pytest.raises(SpecError, match="epochz: unknown key"):
        load_tune_config(tmp_path / "tune.yaml")


# --- the study -----------------------------------------------------------------------------------

def test_resume_then_best_yaml_and_the_best_model_registered(trainable_dataset, tune_config, tmp_path, own_registry):
    from vitalflow.model.card import read_model_card
    from vitalflow.model.config import load_train_config
    from vitalflow.tune.space import apply, load_tune_config
    from vitalflow.tune.study import run_study

    study_dir = tmp_path / "study"
    first = run_study(str(trainable_dataset), study_dir, 2, str(tune_config))
    assert first.ran == 2 and first.finished == 2 and (study_dir / "best.yaml").exists()
    before = [_summary(t) for t in _study(study_dir).get_trials()]
    assert len(before) == 2 and all(len(t[4]) == 2 for t in before if t[1] == TrialState.COMPLETE)

    second = run_study(str(trainable_dataset), study_dir, 3, str(tune_config))  # resumes: one more trial
    assert second.ran == 1
    after = [_summary(t) for t in _study(study_dir).get_trials()]
    assert len(after) == 3 and after[:2] == before
    assert {t[1] for t in after} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for number in range(3):
        assert (study_dir / "trials" / str(number) / "train.yaml").exists()

    # the command: no trial left to run; the best trial printed, best.yaml, best-model trained and registered
    result = CliRunner().invoke(app, ["tune", str(trainable_dataset), "--trials", "3", "--output", str(study_dir),
                                      "--config", str(tune_config)])
    assert result.exit_code == 0, result.output
    assert len(_study(study_dir).get_trials()) == 3
    study = _study(study_dir)
    best = study.best_trial
    assert f"best trial {best.number}: val mean AUPRC {best.value:.4f}" in result.output
    assert "network.lstm_units" in result.output and "registered: vitalflow/" in result.output

    tune, base = load_tune_config(tune_config)
    params = {k: tune.search[k].decode(v) for k, v in best.params.items()}
    written = load_train_config(study_dir / "best.yaml")
    assert written == apply(base, params)
    assert list(written.network.lstm_units) == params["network.lstm_units"]

    card = read_model_card(str(study_dir / "best-model"))
    assert card.tuning is not None
    assert (card.tuning.trial, card.tuning.trials, card.tuning.study) == (best.number, 3, "tiny")
    assert card.tuning.value == pytest.approx(best.value) and card.metrics["val_auprc"] == pytest.approx(best.value)
    assert card.tuning.storage == f"sqlite:///{(study_dir / 'study.db').resolve()}"
    assert card.config_hash == read_model_card(str(study_dir / "trials" / str(best.number))).config_hash

    from vitalflow.registry.tracking import client

    (run,) = client().search_runs([client().get_experiment_by_name("vitalflow").experiment_id])
    tags = run.data.tags
    assert tags["tuning.study"] == "tiny" and tags["tuning.trial"] == str(best.number)
    assert tags["tuning.trials"] == "3" and json.loads(tags["tuning.params"]) == params


def test_a_trial_left_running_by_a_dead_process_is_failed_and_rerun_from_its_checkpoint(trainable_dataset, tune_config,
                                                                                        tmp_path):
    from vitalflow.dataset.reference import open_dataset
    from vitalflow.model.card import read_model_card
    from vitalflow.train.run import train_model
    from vitalflow.tune.space import apply, load_tune_config
    from vitalflow.tune.study import open_study, run_study

    study_dir = tmp_path / "study"
    tune, base = load_tune_config(tune_config)
    study = open_study(study_dir, tune, base, open_dataset(str(trainable_dataset)).fingerprint)
    dead = study.ask()  # a process that asked for a trial, sampled it, trained an epoch and died
    params = {path: dist.suggest(dead, path) for path, dist in tune.search.items()}
    trial_dir = study_dir / "trials" / "0"
    dead.set_user_attr("checkpoints", str(trial_dir / "_checkpoints"))
    trial_dir.mkdir(parents=True)
    (trial_dir / "train.yaml").write_text(yaml.safe_dump(apply(base, params).model_dump(mode="json")))

    def killed(epoch, scores):
        dead.report(scores["val_auprc"], epoch)
        raise KeyboardInterrupt  # stands for SIGKILL: the epoch is checkpointed, nothing else happens

    with pytest.raises(KeyboardInterrupt):
        train_model(str(trainable_dataset), str(trial_dir), str(trial_dir / "train.yaml"), on_epoch=killed)

    result = run_study(str(trainable_dataset), study_dir, 1, str(tune_config))
    trials = _study(study_dir).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["interrupted"] == "killed"
    assert trials[1].user_attrs["resumes"] == 0
    assert {k: tune.search[k].decode(v) for k, v in trials[1].params.items()} == params
    assert result.best.number == 1 and result.ran == 1
    # the rerun went on from the dead trial's checkpoint of epoch 1, reporting both epochs
    assert trials[1].intermediate_values[1] == trials[0].intermediate_values[1]
    assert list(trials[1].intermediate_values) == [1, 2]
    card = read_model_card(str(study_dir / "trials" / "1"))
    assert card.training.resumed == 1 and card.training.epochs_run == 2


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_pruned_trial_stops_after_its_first_epoch_and_writes_no_model(trainable_dataset, tune_config, tmp_path):
    from vitalflow.tune.study import run_study

    study_dir = tmp_path / "study"
    result = run_study(str(trainable_dataset), study_dir, 1, str(tune_config), pruner=_AlwaysPrune())
    (trial,) = _study(study_dir).get_trials()
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    assert not (study_dir / "trials" / "0" / "model_card.json").exists()
    assert (study_dir / "trials" / "0" / "_checkpoints").exists()  # the epoch it trained
    assert result.best is None and result.counts == {"pruned": 1}
    assert not (study_dir / "best.yaml").exists() and not (study_dir / "best-model").exists()


def test_tune_writes_yaml_that_vitalflow_train_reads(tmp_path):
    """best.yaml's header is a comment: the file is a plain train config."""
    from vitalflow.model.config import TrainConfig, load_train_config

    path = tmp_path / "best.yaml"
    path.write_text("# vitalflow tune: ...\n" + yaml.safe_dump(TrainConfig().model_dump(mode="json"), sort_keys=False))
    assert load_train_config(path) == TrainConfig()


def test_tune_has_help_with_flags_as_flags_and_verbose():
    result = CliRunner().invoke(app, ["tune", "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    assert "--trials" in result.output and "--timeout" in result.output and "<bool>" not in result.output
    assert "--verbose" in result.output
    assert "tune" in CliRunner().invoke(app, ["--help"]).output
