"""An Optuna study over train configs, kept in ``STUDY_DIR/study.db`` (SQLite) so that it resumes.

Each trial samples a config from the search space (`vitalflow.tune.space`), trains it on the
train split into ``STUDY_DIR/trials/<number>/`` (`vitalflow.train.run.train_model`) and reports
the validation mean event AUPRC after every epoch; the median pruner stops a trial whose score is
below the median of the earlier trials' at the same epoch. The objective is the best epoch's
validation mean AUPRC (the test split is never read).

Rerunning the same command resumes: trials already COMPLETE or PRUNED count toward ``--trials``; a
trial left RUNNING by a killed process, or stopped by a signal, is marked FAIL and run again as a new
trial with the same values, resuming from the failed trial's checkpoints (training is deterministic,
so it ends where the uninterrupted trial would have). A trial whose training fails with a non-finite
loss is FAIL and does not count. One process per study: a RUNNING trial found at start is taken to
be dead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import TrialState

from vitalflow.dataset.reference import open_dataset
from vitalflow.errors import OutputError, SpecError, VitalflowError
from vitalflow.model.card import CARD_NAME, Tuning, read_model_card
from vitalflow.model.config import TrainConfig, train_config_hash
from vitalflow.runtime.stop import StopRequest
from vitalflow.store import Store
from vitalflow.train.checkpoints import Checkpoints
from vitalflow.train.run import CHECKPOINT_DIR, check_dataset, dataset_spec, train_model
from vitalflow.tune.space import TuneConfig, apply, load_tune_config, space_hash

log = logging.getLogger("vitalflow.progress")

STUDY_DB = "study.db"
TRIALS_DIR = "trials"
BEST_CONFIG = "best.yaml"
BEST_MODEL = "best-model"
TRIAL_CONFIG = "train.yaml"
OBJECTIVE = "val_auprc"
#: Trials failing in a row (non-finite loss) before the study gives up.
MAX_FAILURES_IN_A_ROW = 3


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    params: dict[str, Any]  # by dotted path, as config values
    config: TrainConfig  # the base with the params applied
    checkpoints: str  # the trial's checkpoint directory (complete)


@dataclass(frozen=True)
class StudyResult:
    study_dir: Path
    storage: str
    study_name: str
    counts: dict[str, int]  # trial state (complete, pruned, fail, ...) -> trials
    ran: int  # trials this invocation finished
    best: BestTrial | None
    stopped: str | None = None  # the signal that stopped the study
    timed_out: bool = False
    tune: TuneConfig = field(default_factory=TuneConfig)

    @property
    def finished(self) -> int:
        return self.counts.get("complete", 0) + self.counts.get("pruned", 0)

    def tuning(self) -> Tuning | None:
        """The card's record of the study (None without a best trial)."""
        if self.best is None:
            return None
        return Tuning(storage=self.storage, study=self.study_name, trial=self.best.number, value=self.best.value,
                      trials=self.finished, params=self.best.params)


def storage_url(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / STUDY_DB).resolve()}"


def _pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    if tune.pruner is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=tune.pruner.startup_trials,
                                       n_warmup_steps=tune.pruner.warmup_epochs)


def open_study(study_dir: Path, tune: TuneConfig, base: dict, fingerprint: str,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study in ``study_dir`` (created, or loaded when it is of the same search space and dataset)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=storage_url(study_dir), study_name=tune.study_name, load_if_exists=True,
                                direction="maximize", sampler=optuna.samplers.TPESampler(seed=tune.seed),
                                pruner=pruner or _pruner(tune))
    expected = {"space_hash": space_hash(tune, base), "dataset_fingerprint": fingerprint}
    held = {k: study.user_attrs.get(k) for k in expected}
    if all(v is None for v in held.values()):
        for k, v in expected.items():
            study.set_user_attr(k, v)
    else:
        differs = [k.replace("_", " ") for k, v in expected.items() if held[k] != v]
        if differs:
            raise OutputError(f"{study_dir}: study {tune.study_name!r} was run with another "
                              f"{' and '.join(differs)}: choose another output (or study_name)")
    return study


def recover(study: optuna.Study) -> list[int]:
    """Fail the trials a dead process left RUNNING, and queue every interrupted trial not yet rerun
    (same values, its checkpoints); returns the numbers queued."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        optuna.trial.Trial(study, t._trial_id).set_user_attr("interrupted", "killed")
        study.tell(t.number, state=TrialState.FAIL)
        log.warning("trial %d was left running by a stopped process: failed, it runs again", t.number)
    trials = study.get_trials(deepcopy=False)
    rerun = {t.user_attrs.get("resumes") for t in trials}
    queued = []
    for t in trials:
        if t.state == TrialState.FAIL and "interrupted" in t.user_attrs and t.number not in rerun:
            study.enqueue_trial(t.params, user_attrs={"resumes": t.number,
                                                      "checkpoints": t.user_attrs.get("checkpoints")})
            queued.append(t.number)
    return queued


def _sampler_seed(seed: int, trials: int) -> int:
    return int(np.random.SeedSequence([seed, trials]).generate_state(1)[0])


class _Stopped(Exception):
    pass


def _run_trial(study: optuna.Study, tune: TuneConfig, base: dict, dataset_uri: str, study_dir: Path) -> str:
    """One trial, told to the study; returns its state ("complete", "pruned", "fail")."""
    # a sampler seeded by (seed, trials so far): a resumed study samples what an uninterrupted one would
    study.sampler = optuna.samplers.TPESampler(seed=_sampler_seed(tune.seed, len(study.get_trials(deepcopy=False))))
    trial = study.ask()
    started = time.monotonic()
    params = {path: dist.suggest(trial, path) for path, dist in tune.search.items()}
    try:
        config = apply(base, params)
    except ValueError as exc:  # a combination the bounds check could not see
        trial.set_user_attr("error", str(exc).splitlines()[0])
        study.tell(trial, state=TrialState.FAIL)
        raise SpecError(f"trial {trial.number}: the sampled config {params} is not a valid train config "
                        f"({str(exc).splitlines()[0]})") from None
    trial_dir = study_dir / TRIALS_DIR / str(trial.number)
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / TRIAL_CONFIG).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    checkpoints = trial.user_attrs.get("checkpoints") or str(trial_dir / CHECKPOINT_DIR)
    trial.set_user_attr("checkpoints", checkpoints)
    trial.set_user_attr("model_dir", str(trial_dir))
    what = f"trial {trial.number}" + (f" (rerun of {trial.user_attrs['resumes']})" if "resumes" in trial.user_attrs
                                      else "")
    log.info("%s: %s", what, ", ".join(f"{k} {v}" for k, v in params.items()))

    def report(epoch: int, scores: dict[str, float]) -> None:
        trial.report(scores[OBJECTIVE], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: val mean AUPRC {scores[OBJECTIVE]:.4f}")

    try:
        if "resumes" in trial.user_attrs:  # the epochs the interrupted trial finished, reported again
            state = Checkpoints(checkpoints).state()
            if state is not None and state.latest_file is not None:
                for epoch, value in enumerate(state.history.get(OBJECTIVE, []), start=1):
                    report(epoch, {OBJECTIVE: value})
        result = train_model(dataset_uri, str(trial_dir), str(trial_dir / TRIAL_CONFIG), checkpoints,
                             on_epoch=report)
    except optuna.TrialPruned as exc:
        study.tell(trial, state=TrialState.PRUNED)
        log.info("%s pruned at %s (%.1f s)", what, exc, time.monotonic() - started)
        return "pruned"
    except FloatingPointError as exc:  # a non-finite loss: these values do not train
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        log.warning("%s failed: %s", what, exc)
        return "fail"
    except BaseException as exc:
        trial.set_user_attr("error", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        study.tell(trial, state=TrialState.FAIL)
        raise
    if result.stopped:
        trial.set_user_attr("interrupted", result.stopped)
        study.tell(trial, state=TrialState.FAIL)
        raise _Stopped(result.stopped)
    value = float(result.card.metrics[OBJECTIVE])
    trial.set_user_attr("best_epoch", result.card.training.best_epoch)
    study.tell(trial, value)
    log.info("%s: val mean AUPRC %.4f (best epoch %d of %d; %.1f s)", what, value, result.card.training.best_epoch,
             result.card.training.epochs_run, time.monotonic() - started)
    return "complete"


def best_trial(study: optuna.Study, tune: TuneConfig, base: dict) -> BestTrial | None:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    t = study.best_trial
    params = {k: tune.search[k].decode(v) if k in tune.search else v for k, v in t.params.items()}
    return BestTrial(number=t.number, value=float(t.value), params=params, config=apply(base, params),
                     checkpoints=t.user_attrs["checkpoints"])


def counts(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def write_best_config(study_dir: Path, result: StudyResult) -> Path:
    """``best.yaml``: the best trial's whole train config (for ``vitalflow train --config``)."""
    best = result.best
    path = study_dir / BEST_CONFIG
    head = (f"# vitalflow tune: trial {best.number} of study {result.study_name!r} ({result.storage}), "
            f"val mean AUPRC {best.value:.4f}\n# train it: vitalflow train DATASET --output MODEL --config {path}\n")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(head + yaml.safe_dump(best.config.model_dump(mode="json"), sort_keys=False))
    tmp.replace(path)
    return path


def prepare_best_model(study_dir: Path, best: BestTrial) -> Path:
    """``best-model``, ready for `train_model` with the best trial's checkpoints: a card of another
    config (an earlier best) is removed, so the directory is written again."""
    path = study_dir / BEST_MODEL
    store = Store(str(path))
    if store.exists(CARD_NAME) and read_model_card(store.uri).config_hash != train_config_hash(best.config):
        store.delete(CARD_NAME)
    return path


def run_study(dataset_uri: str, study_dir: str | Path, trials: int, config_path: str | None = None,
              timeout: float | None = None, pruner: optuna.pruners.BasePruner | None = None) -> StudyResult:
    """Run (or resume) the study until ``trials`` are COMPLETE or PRUNED, ``timeout`` seconds have
    passed (no trial starts after it) or a signal stops it; write ``best.yaml`` unless stopped.
    ``pruner``: instead of the config's (tests)."""
    tune, base = load_tune_config(config_path)
    if "://" in str(study_dir):
        raise OutputError(f"{study_dir}: the study (SQLite) is kept in a local folder: give a local --output")
    study_dir = Path(study_dir)
    dataset = open_dataset(dataset_uri)
    check_dataset(dataset, TrainConfig.model_validate(base), dataset_spec(dataset))
    study = open_study(study_dir, tune, base, dataset.fingerprint, pruner)
    queued = recover(study)
    if queued:
        log.info("rerunning interrupted trial(s) %s from their checkpoints", ", ".join(map(str, queued)))
    started, ran, failures, stopped, timed_out = time.monotonic(), 0, 0, None, False
    with StopRequest(then="stopping; the study resumes with the same command") as stop:
        while True:
            finished = sum(counts(study).get(s, 0) for s in ("complete", "pruned"))
            if finished >= trials:
                break
            if stop.requested:
                stopped = stop.requested
                break
            if timeout is not None and time.monotonic() - started >= timeout:
                timed_out = True
                log.warning("--timeout %g s reached after %d trial(s) of this run: no new trial starts", timeout, ran)
                break
            try:
                state = _run_trial(study, tune, base, dataset_uri, study_dir)
            except _Stopped as exc:
                stopped = str(exc)
                break
            if state == "fail":
                failures += 1
                if failures >= MAX_FAILURES_IN_A_ROW:
                    raise VitalflowError(f"{failures} trials in a row failed with a non-finite loss (their errors "
                                         f"are in {storage_url(study_dir)}): narrow the search space "
                                         "(learning_rate)")
            else:
                failures = 0
                ran += 1
    result = StudyResult(study_dir=study_dir, storage=storage_url(study_dir), study_name=tune.study_name,
                         counts=counts(study), ran=ran, best=best_trial(study, tune, base), stopped=stopped,
                         timed_out=timed_out, tune=tune)
    if result.best is not None and not stopped:
        write_best_config(study_dir, result)
    return result
