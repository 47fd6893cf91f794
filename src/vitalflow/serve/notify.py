"""Notifications of a finished job: a POST to the webhook (httpx, short timeout, a few retries)
and an SNS publish (boto3) to the success or error topic. A notification that cannot be
delivered is logged (without credentials: `vitalflow.errors.redact`) and never fails the job.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from vitalflow.errors import redact

log = logging.getLogger("vitalflow.serve")

def post_webhook(url: str, document: dict[str, Any], attempts: int = 3, timeout_s: float = 5.0,
                 backoff_s: float = 0.3) -> bool:
    """POST ``document`` as JSON; retried on a connection error or a 5xx/429 answer. True when
    delivered (2xx)."""
    import httpx

    body = json.dumps(document).encode()
    for attempt in range(1, attempts + 1):
        try:
            r = httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=timeout_s)
            if 200 <= r.status_code < 300:
                return True
            problem = f"HTTP {r.status_code}"
            if r.status_code < 500 and r.status_code != 429:
                break  # the receiver refused it: retrying will not help
        except Exception as exc:  # noqa: BLE001 - any transport error: retry, then log
            problem = type(exc).__name__
        if attempt < attempts:
            time.sleep(backoff_s * attempt)
    log.warning("job %s: webhook %s not notified (%s)", document.get("jobId"), redact(url), problem)
    return False


def publish_sns(topic_arn: str, document: dict[str, Any]) -> bool:
    """Publish ``document`` to an SNS topic (boto3's own retries); True when accepted."""
    try:
        import boto3

        region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else None
        boto3.client("sns", region_name=region or None).publish(
            TopicArn=topic_arn, Message=json.dumps(document), Subject=f"vitalflow job {document.get('status')}"[:100])
        return True
    except Exception as exc:  # noqa: BLE001 - a failing notification never fails the job
        log.warning("job %s: SNS topic %s not notified (%s: %s)", document.get("jobId"), topic_arn,
                    type(exc).__name__, redact(str(exc))[:200])
        return False


def notify(document: dict[str, Any], webhook: str | None, success_topic: str | None,
           error_topic: str | None) -> dict[str, bool]:
    """Send a finished job's status document everywhere configured; what was delivered."""
    sent: dict[str, bool] = {}
    if webhook:
        sent["webhook"] = post_webhook(webhook, document)
    topic = success_topic if document.get("status") == "Completed" else error_topic
    if topic:
        sent["sns"] = publish_sns(topic, document)
    return sent
