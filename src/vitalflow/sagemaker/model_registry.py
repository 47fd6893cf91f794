"""The SageMaker Model Registry: a registered vitalflow model as a model package in a group.

``vitalflow models push NAME@ALIAS --group GROUP`` (README "Registry") does, in order:

1. upload the model directory as ``model.tar.gz`` and the evaluation's ``metrics.json`` to
   ``<s3-prefix>/<name>/<version>/`` (default prefix: ``s3://sagemaker-<region>-<account>/vitalflow/models``,
   the bucket the SageMaker SDK uses by default);
2. create the model package group if it does not exist;
3. create a model package in it: the official **TensorFlow 2.19.0 inference CPU image** of the
   region (TensorFlow Serving; same registry accounts as the training image, :data:`TENSORFLOW_ACCOUNTS`),
   the model data URL, status ``PendingManualApproval``, the metrics as ``ModelQuality`` statistics,
   the lineage as customer metadata.

The request builders are pure (:func:`group_request`, :func:`package_request`); :func:`push` makes
the boto3 calls. sagemaker-core's ``ModelPackage.create`` is not used: it reads a
``ModelPackageName`` that ``CreateModelPackage`` never returns (only ``ModelPackageArn``).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from vitalflow.errors import LaunchError
from vitalflow.sagemaker.aws import aws_call, aws_client, split_s3
from vitalflow.sagemaker.launch import TENSORFLOW_ACCOUNTS, FrameworkImage

INFERENCE_IMAGE = "tensorflow-inference:2.19.0-cpu"
INFERENCE = FrameworkImage("TensorFlow 2.19.0 inference CPU", INFERENCE_IMAGE, TENSORFLOW_ACCOUNTS)
APPROVAL = "PendingManualApproval"
MODEL_TARBALL, METRICS_FILE = "model.tar.gz", "metrics.json"
INSTANCE_TYPES = ["ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge", "ml.c5.2xlarge"]
_GROUP = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_METADATA_VALUE = 256  # CustomerMetadataProperties: values of at most 256 characters


def check_group(group: str) -> str:
    """A model package group name: letters, digits and single hyphens, at most 63 characters.

    >>> check_group("vitalflow-models")
    'vitalflow-models'
    """
    if not _GROUP.fullmatch(group):
        raise LaunchError(f"--group {group!r}: a model package group name is 1-63 letters, digits and "
                          "hyphens, starting and ending with a letter or digit")
    return group


def inference_image(region: str) -> str:
    """The TensorFlow Serving CPU image of ``region``.

    >>> inference_image("eu-central-1")
    '763104351884.dkr.ecr.eu-central-1.amazonaws.com/tensorflow-inference:2.19.0-cpu'
    """
    return INFERENCE.uri(region)


def default_prefix(region: str, account: str) -> str:
    """The SageMaker SDK's default bucket of the account and region, prefix ``vitalflow/models``.

    >>> default_prefix("us-east-1", "123456789012")
    's3://sagemaker-us-east-1-123456789012/vitalflow/models'
    """
    return f"s3://sagemaker-{region}-{account}/vitalflow/models"


def artifact_prefix(s3_prefix: str, name: str, version: str) -> str:
    """Where a version's tarball and metrics go.

    >>> artifact_prefix("s3://b/models/", "vitalflow", "3")
    's3://b/models/vitalflow/3'
    """
    if not s3_prefix.startswith("s3://") or not split_s3(s3_prefix)[0]:
        raise LaunchError(f"--s3-prefix {s3_prefix!r} is not an s3:// location (s3://bucket/prefix)")
    return f"{s3_prefix.rstrip('/')}/{name}/{version}"


def group_request(group: str) -> dict[str, Any]:
    return {"ModelPackageGroupName": check_group(group),
            "ModelPackageGroupDescription": "vitalflow models (CNN-LSTM-LSTM on VitalDB recordings)"}


def package_request(group: str, image: str, model_data_url: str, metrics_url: str | None, description: str,
                    metadata: Mapping[str, str]) -> dict[str, Any]:
    """The ``CreateModelPackage`` request: a versioned package of ``group`` awaiting approval."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": check_group(group),
        "ModelPackageDescription": description[:1000],
        "InferenceSpecification": {
            "Containers": [{"Image": image, "ModelDataUrl": model_data_url, "Framework": "TENSORFLOW",
                            "FrameworkVersion": "2.19"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": INSTANCE_TYPES,
            "SupportedTransformInstanceTypes": INSTANCE_TYPES,
        },
        "ModelApprovalStatus": APPROVAL,
        "CustomerMetadataProperties": {k[:128]: str(v)[:_METADATA_VALUE] for k, v in metadata.items()},
    }
    if metrics_url:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                                   "S3Uri": metrics_url}}}
    return request


def model_tarball(model_dir: Path) -> bytes:
    """The model directory as ``model.tar.gz``, files at the archive's root (as a SageMaker
    training job uploads ``/opt/ml/model``), without ``_``- or ``.``-prefixed entries."""
    model_dir = Path(model_dir)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(model_dir.rglob("*")):
            rel = path.relative_to(model_dir)
            if path.is_file() and not any(part.startswith(("_", ".")) for part in rel.parts):
                tar.add(path, arcname=rel.as_posix(), recursive=False)
    return buffer.getvalue()


def is_model_tarball(uri: str) -> bool:
    """Whether ``uri`` names an S3 ``model.tar.gz`` (used as it is) rather than a model directory.

    >>> is_model_tarball("s3://b/models/vitalflow/3/model.tar.gz"), is_model_tarball("s3://b/models/m1")
    (True, False)
    """
    return uri.startswith("s3://") and uri.endswith(".tar.gz")


def upload_model(model_dir: Path, model_data_url: str, region: str) -> str:
    """Put the model directory as ``model.tar.gz`` (:func:`model_tarball`) at ``model_data_url``;
    returns the URL. What ``models push`` and ``vitalflow deploy`` upload."""
    bucket, key = split_s3(model_data_url)
    s3 = aws_client("s3", region)
    aws_call(f"upload of {model_data_url}", s3.put_object, Bucket=bucket, Key=key, Body=model_tarball(model_dir))
    return model_data_url


@dataclass(frozen=True)
class Pushed:
    model_package_arn: str
    group: str
    group_created: bool
    model_data_url: str
    metrics_url: str | None
    region: str


def _account(region: str) -> str:
    sts = aws_client("sts", region)
    return aws_call("reading the AWS account (sts get-caller-identity)", sts.get_caller_identity)["Account"]


def push(model_dir: Path, group: str, name: str, version: str, metrics: Mapping | None,
         metadata: Mapping[str, str], region: str, s3_prefix: str | None = None) -> Pushed:
    """Upload the model and its metrics, create the group if missing, create the model package."""
    check_group(group)
    image = inference_image(region)
    prefix = artifact_prefix(s3_prefix or default_prefix(region, _account(region)), name, version)
    model_data_url = upload_model(model_dir, f"{prefix}/{MODEL_TARBALL}", region)
    metrics_url = None
    if metrics:
        s3 = aws_client("s3", region)
        metrics_url = f"{prefix}/{METRICS_FILE}"
        bucket, key = split_s3(metrics_url)
        aws_call(f"upload of {metrics_url}", s3.put_object, Bucket=bucket, Key=key,
              Body=json.dumps(metrics, indent=1).encode(), ContentType="application/json")
    sm = aws_client("sagemaker", region)
    created = False
    try:
        aws_call(f"describing model package group {group}", sm.describe_model_package_group,
              ModelPackageGroupName=group)
    except LaunchError as exc:  # a missing group is a ValidationException (AWS) or ResourceNotFound
        if not re.search(r"ValidationException|ResourceNotFound|does not exist", str(exc)):
            raise
        aws_call(f"creating model package group {group}", sm.create_model_package_group, **group_request(group))
        created = True
    description = f"{name}/{version}: " + ", ".join(f"{k} {v}" for k, v in metadata.items()
                                                   if k in ("spec.name", "spec.version", "dataset.fingerprint"))
    answer = aws_call(f"creating a model package in {group}", sm.create_model_package,
                   **package_request(group, image, model_data_url, metrics_url, description, metadata))
    return Pushed(answer["ModelPackageArn"], group, created, model_data_url, metrics_url, region)
