"""Asynchronous jobs under load: throughput, turnaround and peak memory of the service's job queue
and workers, over real synthetic recordings in S3 (a SeaweedFS server on loopback), everything on
127.0.0.1, bounded in count and time.

    .venv/bin/python bench/serve_jobs.py [--jobs 200] [--recordings 20] [--hours 0.3] [--workers 2]
                                         [--model DIR] [--deadline 900] [--json out.json]

Starts SeaweedFS, writes ``--recordings`` seeded synthetic recordings to S3, trains the tests' tiny
network unless ``--model`` is given, starts the service (the real app on uvicorn, in a subprocess,
with ``--workers`` job workers) and a webhook receiver, submits ``--jobs`` jobs at once (cycling
over the recordings, each job its own jobId), polls until every job is final, then prints a
Markdown table with the machine. Errors (a refused submit, a failed job, a missing notification)
are counted and make the exit code 1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import cpu_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = """\
network: {conv_filters: [8], conv_kernel: 3, pool: 5, lstm_units: [8, 8], dense_units: 8}
epochs: 2
early_stopping: null
batch_size: 64
"""



def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def train_tiny(root: Path) -> Path:
    from vitalflow.synth import synth_corpus

    synth_corpus(root / "train-rec", 12, seed=0, hours=1.5, waves=False)  # the tests' trainable dataset
    (root / "train.yaml").write_text(TINY)
    (root / "split.yaml").write_text("split: {seed: 3}\n")
    run = [sys.executable, "-m", "vitalflow"]
    subprocess.run([*run, "preprocess", "-i", root / "train-rec", "-c", root / "train-rec/clinical.csv",
                    "-o", root / "ds", "--config", root / "split.yaml", "-q"], check=True, capture_output=True)
    env = dict(os.environ, VITALFLOW_HOME=str(root / "home"))  # its registry entry stays in the temp dir
    env.pop("MLFLOW_TRACKING_URI", None)
    r = subprocess.run([*run, "train", root / "ds", "--output", root / "model", "--config", root / "train.yaml"],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"training the tiny model failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return root / "model"


class MemorySampler(threading.Thread):
    """Peak resident memory of the server and its workers (VmHWM of each process seen)."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.stop, self.peaks = server, threading.Event(), {}

    def run(self) -> None:
        from serve_harness import hwm_mb

        while not self.stop.wait(0.5):
            pids = {"server": self.server.process.pid, **{f"worker {p}": p for p in self.server.workers()}}
            for name, pid in pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0.0), hwm_mb(pid))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--recordings", type=int, default=20)
    p.add_argument("--hours", type=float, default=0.3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--model", type=Path)
    p.add_argument("--deadline", type=float, default=900.0, help="seconds until the run gives up")
    p.add_argument("--json", type=Path)
    a = p.parse_args()

    import httpx

    from seaweed import SeaweedS3
    from serve_harness import Server, WebhookReceiver
    from vitalflow.synth import synth_corpus

    with tempfile.TemporaryDirectory(prefix="vitalflow-bench-jobs-") as temp:
        root = Path(temp)
        s3 = SeaweedS3(root / "seaweed")
        s3.start()
        try:
            os.environ.update(s3.env())
            bucket = s3.make_bucket("bench")
            model = a.model or train_tiny(root)
            synth_corpus(root / "rec", a.recordings, seed=71, hours=a.hours, waves=False)
            client = s3.client()
            for i in range(1, a.recordings + 1):
                client.upload_file(str(root / "rec" / f"{i:04d}.vital"), bucket, f"in/{i:04d}.vital")
            import csv

            with open(root / "rec" / "clinical.csv", newline="") as f:
                rows = {int(r["caseid"]): r for r in csv.DictReader(f)}
            patients = {i: {k: rows[i][k] for k in ("age", "sex", "height", "weight", "bmi", "asa")} for i in rows}
            with WebhookReceiver() as hook:
                settings = {"model": str(model), "state_dir": str(root / "state"), "workers": a.workers,
                            "input_prefixes": [f"s3://{bucket}/in"], "output_prefix": f"s3://{bucket}/results",
                            "failure_prefix": f"s3://{bucket}/failures", "webhook": hook.url}
                t_start = time.perf_counter()
                server = Server(settings, root / "server.log").start()
                sampler = MemorySampler(server)
                try:
                    server.wait_workers(a.workers)
                    sampler.start()
                    startup_s = time.perf_counter() - t_start
                    result = run_load(httpx, server.url, a, patients, hook, a.deadline)
                finally:
                    sampler.stop.set()
                    server.stop()
                result["startup_s"] = startup_s
                result["peak_rss_mb"] = {k: round(v, 1) for k, v in sampler.peaks.items()}
        finally:
            s3.kill()
    machine = f"{cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    result["machine"] = machine
    print_table(result, a)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return 1 if result["errors"] else 0


def run_load(httpx, url: str, a, patients: dict, hook, deadline_s: float) -> dict:
    ids = [f"load-{k:04d}" for k in range(a.jobs)]
    submit_s: list[float] = []
    errors: list[str] = []
    submitted_at: dict[str, float] = {}

    def submit(k: int, client) -> None:
        i = 1 + k % a.recordings
        body = {"jobId": ids[k], "requestTime": "2026-01-01T00:00:00Z", "s3Key": f"{i:04d}.vital",
                "patient": patients[i]}
        t = time.perf_counter()
        r = client.post("/jobs", json=body)
        submit_s.append(time.perf_counter() - t)
        submitted_at[ids[k]] = time.time()
        if r.status_code != 202:
            errors.append(f"{ids[k]}: submit answered {r.status_code} {r.text[:200]}")

    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=16)) as client:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: submit(k, client), range(a.jobs)))
        submit_wall = time.perf_counter() - t0
        docs: dict[str, dict] = {}
        status_s: list[float] = []
        end = time.monotonic() + deadline_s
        while len(docs) < a.jobs and time.monotonic() < end:
            t = time.perf_counter()
            page = client.get("/jobs", params={"limit": 1000}).json()
            status_s.append(time.perf_counter() - t)
            for d in page["jobs"]:
                if d["status"] in ("Completed", "Failed", "Cancelled"):
                    docs[d["jobId"]] = d
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        t = time.perf_counter()
        for job_id in ids[:50]:
            client.get(f"/jobs/{job_id}")
        get_ms = (time.perf_counter() - t) / 50 * 1000
    time.sleep(1.0)  # the last notifications
    missing = [j for j in ids if j not in docs]
    failed = [j for j, d in docs.items() if d["status"] != "Completed"]
    errors += [f"{j}: not final after {deadline_s:g} s" for j in missing]
    errors += [f"{j}: {docs[j]['status']}: {docs[j]['error']}" for j in failed]
    notified = hook.by_job()
    errors += [f"{j}: {len(notified.get(j, []))} notifications" for j in ids if len(notified.get(j, [])) != 1]
    import datetime as dt

    def done_at(d):
        return dt.datetime.fromisoformat(d["completedTimeStamp"].replace("Z", "+00:00")).timestamp()

    turnaround = [done_at(d) - submitted_at[j] for j, d in docs.items() if d["completedTimeStamp"]]
    processing = [d["processing_time_seconds"] for d in docs.values() if d["processing_time_seconds"] is not None]
    return {
        "jobs": a.jobs, "recordings": a.recordings, "hours": a.hours, "workers": a.workers,
        "completed": sum(d["status"] == "Completed" for d in docs.values()), "errors": errors,
        "wall_s": round(wall, 1), "jobs_per_s": round(len(docs) / wall, 2),
        "submit_wall_s": round(submit_wall, 2),
        "submit_ms_p50": round(percentile(submit_s, 50) * 1000, 1), "submit_ms_p99": round(percentile(submit_s, 99) * 1000, 1),
        "status_get_ms_mean": round(get_ms, 1),
        "list_ms_p50": round(percentile(status_s, 50) * 1000, 1),
        "processing_s_p50": round(percentile(processing, 50), 3), "processing_s_p99": round(percentile(processing, 99), 3),
        "turnaround_s_p50": round(percentile(turnaround, 50), 1), "turnaround_s_max": round(max(turnaround or [0]), 1),
        "notifications": sum(len(v) for v in notified.values()),
    }


def print_table(r: dict, a) -> None:
    peaks = r.get("peak_rss_mb", {})
    workers = [v for k, v in peaks.items() if k.startswith("worker")]
    print(f"\nAsynchronous jobs: {r['jobs']} jobs over {r['recordings']} synthetic recordings of {r['hours']} h in "
          f"S3 (SeaweedFS on loopback), {r['workers']} job worker(s), tiny network\n")
    print(f"Machine: {r['machine']}\n")
    print("| measure | value |\n|---|---|")
    rows = [
        ("jobs completed / errors", f"{r['completed']} / {len(r['errors'])}"),
        ("wall time, first submit to last job final", f"{r['wall_s']} s"),
        ("throughput", f"{r['jobs_per_s']} jobs/s"),
        (f"submit {r['jobs']} jobs (8 clients)", f"{r['submit_wall_s']} s"),
        ("POST /jobs latency p50 / p99", f"{r['submit_ms_p50']} / {r['submit_ms_p99']} ms"),
        ("GET /jobs/{jobId} mean (idle, 50 requests)", f"{r['status_get_ms_mean']} ms"),
        ("job processing time p50 / p99 (read S3, transform, model, write S3)",
         f"{r['processing_s_p50']} / {r['processing_s_p99']} s"),
        ("turnaround p50 / max (submit to completed)", f"{r['turnaround_s_p50']} / {r['turnaround_s_max']} s"),
        ("GET /jobs?limit=1000 p50 (during the run)", f"{r['list_ms_p50']} ms"),
        ("webhook notifications", str(r["notifications"])),
        ("service start (server + workers loaded)", f"{r['startup_s']:.1f} s"),
        ("peak RSS server process", f"{peaks.get('server', 0):.0f} MB"),
        ("peak RSS per worker (max)", f"{max(workers or [0]):.0f} MB"),
    ]
    for k, v in rows:
        print(f"| {k} | {v} |")
    for e in r["errors"][:10]:
        print(f"error: {e}")


if __name__ == "__main__":
    sys.exit(main())
