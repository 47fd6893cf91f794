"""``vitalflow models`` end to end: train twice (each training registers a version), list, promote,
resolve ``vitalflow@champion`` to a model that predicts what the trained directory predicts, show,
compare (and its refusals), the one-line errors of unknown names, aliases and versions, and
``models push`` to the SageMaker Model Registry.

MLflow runs on its real SQLite store in the session's temporary ``VITALFLOW_HOME`` (the autouse
fixture of ``conftest.py``). The SageMaker control plane (and the S3 it uploads to) is moto in
server mode (``tests/moto_server.py``, the fixtures of ``tests/test_launch.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from test_launch import BUCKET, _no_real_aws, aws, moto_server  # noqa: F401
from vitalflow.cli import app

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def card(model_dir) -> dict:
    return json.loads((Path(model_dir) / "model_card.json").read_text())


@pytest.fixture(scope="module")
def trained(trainable_dataset, tiny_config, tmp_path_factory):
    """Two models of the same dataset (seeds 0 and 1), trained with ``vitalflow train``: each is
    evaluated on the test split and registered as a version of ``vitalflow-cli`` (a name of this
    module, so other tests' versions do not interfere)."""
    root = tmp_path_factory.mktemp("models-cli")
    refs = {}
    for seed in (0, 1):
        config = root / f"seed{seed}.yaml"
        config.write_text(tiny_config.read_text() + f"seed: {seed}\nregistered_model: vitalflow-cli\n")
        result = cli("train", trainable_dataset, "--output", root / f"m{seed}", "--config", config)
        assert result.exit_code == 0, result.output
        line = next(x for x in result.output.splitlines() if x.startswith("registered: "))
        refs[seed] = line.split()[1]
    assert refs == {0: "vitalflow-cli/1", 1: "vitalflow-cli/2"}
    return {"dirs": {0: root / "m0", 1: root / "m1"}, "refs": refs, "root": root}


def test_train_registers_each_model_and_list_shows_both_with_metrics(trained):
    for model_dir in trained["dirs"].values():
        assert (model_dir / "evaluation" / "test" / "metrics.json").is_file()  # evaluated once, by train
    result = cli("models", "list", "vitalflow-cli")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
            for line in result.output.splitlines() if "│ vitalflow-cli/" in line}
    assert set(rows) == {"vitalflow-cli/1", "vitalflow-cli/2"}
    for seed, ref in trained["refs"].items():
        row = rows[ref]
        assert float(row[3]) == pytest.approx(card(trained["dirs"][seed])["metrics"]["val_loss"], rel=1e-3)
        metrics = json.loads((trained["dirs"][seed] / "evaluation/test/metrics.json").read_text())["models"]
        ratios = [metrics["model"][t]["changed"]["mae"] / metrics["persistence"][t]["changed"]["mae"]
                  for t in metrics["model"] if metrics["persistence"][t]["changed"]["mae"]]
        assert row[4] == "-"  # a value model: no decision AUPRC
        assert float(row[5]) == pytest.approx(sum(ratios) / len(ratios), rel=1e-3)
        assert row[6] == "master-poc v2" and card(trained["dirs"][seed])["dataset"]["fingerprint"].startswith(row[7])


def test_promote_then_the_alias_resolves_to_a_model_that_predicts_like_the_original(trained, trainable_dataset):
    import vitalflow
    from vitalflow.registry.resolve import resolve_model

    result = cli("models", "promote", "vitalflow-cli/2", "--alias", "champion")
    assert result.exit_code == 0 and "vitalflow-cli@champion -> vitalflow-cli/2" in result.output, result.output
    listed = cli("models", "list", "vitalflow-cli").output
    assert "@champion" in next(x for x in listed.splitlines() if "vitalflow-cli/2" in x)
    assert "@champion" not in next(x for x in listed.splitlines() if "vitalflow-cli/1" in x)
    resolved = Path(resolve_model("vitalflow-cli@champion"))
    assert resolved != trained["dirs"][1] and (resolved / "model_card.json").is_file()
    assert not (resolved / "_checkpoints").exists()
    assert resolve_model("vitalflow-cli@champion") == str(resolved)  # cached: downloaded once
    a = vitalflow.load_model(str(resolved)).predict_dataset(str(trainable_dataset), "test")
    b = vitalflow.load_model(str(trained["dirs"][1])).predict_dataset(str(trainable_dataset), "test")
    assert a.predicted.shape[0] > 0 and np.array_equal(a.predicted, b.predicted)
    # a model directory is itself; a registry reference also works where `evaluate` takes a model
    assert resolve_model(str(trained["dirs"][0])) == str(trained["dirs"][0])
    result = cli("evaluate", "vitalflow-cli/1", trainable_dataset, "--output", trained["root"] / "eval1")
    assert result.exit_code == 0, result.output
    assert json.loads((trained["root"] / "eval1/metrics.json").read_text())["models"]["model"] == \
        json.loads((trained["dirs"][0] / "evaluation/test/metrics.json").read_text())["models"]["model"]


def test_show_prints_the_card_lineage_and_metrics_against_baselines(trained):
    c = card(trained["dirs"][0])
    result = cli("models", "show", "vitalflow-cli/1")
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("vitalflow-cli/1 (aliases:")
    for value in (c["dataset"]["fingerprint"], c["spec"]["hash"], c["config_hash"], c["dataset"]["uri"]):
        assert value in text
    assert "against the baselines: All windows" in text and "Windows where the target changes" in text
    header = next(x for x in text.splitlines() if "target" in x and "persistence" in x)
    assert [h.strip() for h in header.split("┃")[1:-1]] == ["target", "unit", "n", "model", "persistence",
                                                             "train median", "XGBoost"]


def test_compare_shows_both_models_on_the_same_windows(trained, trainable_dataset):
    result = cli("models", "compare", "vitalflow-cli/1", "vitalflow-cli/2")
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output  # same dataset
    windows = json.loads((trained["dirs"][0] / "evaluation/test/metrics.json").read_text())["windows"]
    assert f"{windows} windows, the same for both" in result.output
    header = next(x for x in result.output.splitlines() if "target" in x and "persistence" in x)
    assert [h.strip() for h in header.split("┃")[1:-1]][:5] == ["target", "unit", "n", "vitalflow-cli/1",
                                                                "vitalflow-cli/2"]
    m0 = json.loads((trained["dirs"][0] / "evaluation/test/metrics.json").read_text())["models"]["model"]
    row = next(x for x in result.output.splitlines() if x.startswith("│ Propofol_INF"))
    assert [c.strip() for c in row.split("│")[1:-1]][3] == f"{m0['Propofol_INF']['all']['mae']:.4g}"
    # a directory and a registry reference mix
    assert cli("models", "compare", trained["dirs"][0], "vitalflow-cli@champion").exit_code == 0


def _model_of_another_spec(model_dir: Path, dest: Path) -> Path:
    """A copy of a model whose card pins an edited spec (version 3, another propofol range) with
    that spec's true hash: what a model trained on a dataset of another spec looks like."""
    from vitalflow.spec.model import Spec

    shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns("_checkpoints"))
    data = card(dest)
    content = data["spec"]["content"]
    content["version"] = 3
    next(f for f in content["timeseries"] if f["name"] == "Propofol_INF")["range"] = [0, 20]
    data["spec"].update(version=3, hash=Spec.model_validate(content).content_hash())
    (dest / "model_card.json").write_text(json.dumps(data))
    return dest


def test_compare_refuses_other_specs_and_warns_of_other_datasets(trained, tmp_path):
    other = _model_of_another_spec(trained["dirs"][0], tmp_path / "other-spec")
    line = error_line(cli("models", "compare", "vitalflow-cli/1", other))
    assert "different specs" in line and "v3" in line and "v2" in line
    refit = tmp_path / "other-data"
    shutil.copytree(trained["dirs"][1], refit, ignore=shutil.ignore_patterns("_checkpoints"))
    data = card(refit)
    data["dataset"]["fingerprint"] = "sha256:" + "2" * 64
    (refit / "model_card.json").write_text(json.dumps(data))
    result = cli("models", "compare", "vitalflow-cli/1", refit)
    assert result.exit_code == 0, result.output
    assert "Warning: vitalflow-cli/1 and " in result.output and "different datasets" in result.output


@pytest.mark.parametrize("args, needles", [
    (["models", "show", "nosuchmodel@champion"], ["no registered model 'nosuchmodel'", "vitalflow-cli"]),
    (["models", "show", "vitalflow-cli@nosuchalias"], ["no alias 'nosuchalias'", "@champion -> vitalflow-cli/2",
                                                       "versions: 1, 2"]),
    (["models", "show", "vitalflow-cli/99"], ["no version 99", "versions: 1, 2"]),
    (["models", "promote", "vitalflow-cli/99", "--alias", "champion"], ["no version 99"]),
    (["models", "promote", "vitalflow-cli/1", "--alias", "latest"], ["cannot be an alias"]),
    (["models", "list", "nosuchmodel"], ["no registered model 'nosuchmodel'"]),
])
def test_unknown_names_aliases_and_versions_are_one_error_line(trained, args, needles):
    line = error_line(cli(*args))
    assert all(n in line for n in needles), line


def test_evaluate_with_an_unknown_reference_is_one_error_line(trained, trainable_dataset):
    assert "no alias 'gone'" in error_line(cli("evaluate", "vitalflow-cli@gone", trainable_dataset))


def test_push_creates_a_pending_model_package_and_tags_the_version(trained, aws):
    """moto (server mode) stands in for SageMaker and S3."""
    import boto3

    from vitalflow.registry.versions import PACKAGE_TAG, find_version

    result = cli("models", "push", "vitalflow-cli@champion", "--group", "vf-models", "--s3-prefix",
                 f"s3://{BUCKET}/registry", "--region", "us-east-1")
    assert result.exit_code == 0, result.output
    arn = next(w for w in result.output.split() if w.startswith("arn:aws:sagemaker:"))
    assert "model package group vf-models (created)" in result.output
    sm = boto3.client("sagemaker")
    package = sm.describe_model_package(ModelPackageName=arn)
    assert package["ModelPackageGroupName"] == "vf-models"
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.19.0-cpu"
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/registry/vitalflow-cli/2/model.tar.gz"
    metrics_uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=metrics_uri.split(f"{BUCKET}/", 1)[1])["Body"].read()
    assert json.loads(body)["models"]["model"] == json.loads(
        (trained["dirs"][1] / "evaluation/test/metrics.json").read_text())["models"]["model"]
    c = card(trained["dirs"][1])
    assert package["CustomerMetadataProperties"]["dataset.fingerprint"] == c["dataset"]["fingerprint"]
    assert [g["ModelPackageGroupName"] for g in sm.list_model_package_groups()["ModelPackageGroupSummaryList"]] \
        == ["vf-models"]
    assert find_version("vitalflow-cli/2").tags[PACKAGE_TAG] == arn
    tar = boto3.client("s3").get_object(Bucket=BUCKET, Key="registry/vitalflow-cli/2/model.tar.gz")["Body"].read()
    import io
    import tarfile

    names = set(tarfile.open(fileobj=io.BytesIO(tar)).getnames())
    assert {"model_card.json", "model.keras", "export/saved_model.pb"} <= names
    assert not any(n.startswith(("_", ".")) for n in names)
    # a second push to the same group: the group is reused, the package is the group's next version
    again = cli("models", "push", "vitalflow-cli/1", "--group", "vf-models", "--s3-prefix", f"s3://{BUCKET}/registry")
    assert again.exit_code == 0 and "(created)" not in again.output, again.output
    assert len(sm.list_model_packages(ModelPackageGroupName="vf-models")["ModelPackageSummaryList"]) == 2


def test_push_refuses_a_bad_group_name(trained, aws):
    line = error_line(cli("models", "push", "vitalflow-cli/1", "--group", "bad_group!", "--region", "us-east-1"))
    assert "--group 'bad_group!'" in line
