"""The AWS side every SageMaker command shares: the region and role checks, the boto3 client and
the rule that turns a failed call into one `LaunchError` line, and S3 URIs split into bucket and
key. ``vitalflow launch`` (`vitalflow.sagemaker.launch`), ``deploy``/``invoke``
(`vitalflow.sagemaker.deploy`) and ``models push`` (`vitalflow.sagemaker.model_registry`) import
these public names; none reaches into another module's private helpers.
"""

from __future__ import annotations

import os
import re
from typing import Callable

from vitalflow.errors import LaunchError

ROLE_ENV = "VITALFLOW_SAGEMAKER_ROLE"
#: A SageMaker job or endpoint name: 1-63 letters, digits and hyphens, no leading or trailing hyphen.
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_ROLE_ARN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")


def resolve_region(region: str | None = None, environ: dict[str, str] | None = None) -> str | None:
    """``region``, else ``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, the AWS profile's region, else None."""
    environ = os.environ if environ is None else environ
    return region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or _profile_region()


def require_region(region: str | None) -> str:
    """``region`` (what `resolve_region` found), or the one error every AWS command gives without one."""
    if not region:
        raise LaunchError("no AWS region: pass --region or set AWS_REGION or AWS_DEFAULT_REGION "
                          "(or a region in your AWS profile)")
    return region


def _profile_region() -> str | None:
    try:
        import boto3
    except ImportError:
        return None
    try:
        return boto3.session.Session().region_name
    except Exception:  # a broken profile must not hide the real message ("no region")
        return None


def check_role_and_region(role: str | None, region: str | None, what: str) -> None:
    """The execution role (an IAM role ARN) and the region every SageMaker request needs."""
    if not role:
        raise LaunchError(f"no IAM role for {what}: pass --role or set {ROLE_ENV}")
    if not _ROLE_ARN.fullmatch(role):
        raise LaunchError(f"--role must be an IAM role ARN like arn:aws:iam::123456789012:role/Name (got {role!r})")
    require_region(region)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def aws_client(service: str, region: str | None):
    """A boto3 client; the endpoint comes from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_<SERVICE>``)."""
    try:
        import boto3
    except ImportError as exc:
        raise LaunchError("boto3 is not installed: pip install 'vitalflow[aws]'") from exc
    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        raise LaunchError("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                          "or AWS_PROFILE, or run where an IAM role provides them")
    require_region(session.region_name)
    return session.client(service)


def aws_call(what: str, fn: Callable, **kwargs):
    """Call boto3 and turn its errors into one-line :class:`LaunchError`."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return fn(**kwargs)
    except NoCredentialsError as exc:
        raise LaunchError("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                          "or AWS_PROFILE, or run where an IAM role provides them") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise LaunchError(f"{what}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise LaunchError(f"{what}: {exc}") from exc
