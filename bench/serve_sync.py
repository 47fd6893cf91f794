"""Synchronous inference over HTTP: throughput, p50/p99 latency, peak memory and errors of
``vitalflow serve`` answering one-window requests (JSON and .npy) from a few concurrent clients.

    .venv/bin/python bench/serve_sync.py --model DIR [--requests 1000] [--concurrency 1,4] [--json out.json]

Starts ``vitalflow serve`` (the real command: uvicorn on 127.0.0.1, a free port, its own state
dir), waits for ``/ping`` (and for XLA to compile the small batch sizes: serve/model_host.py), then for each body format and concurrency sends ``--requests``
requests of one window each (httpx, ``--concurrency`` clients on one asyncio loop, keep-alive),
checks every answer is 200 with the model's predictions per window (8 of a value model), and stops
the server (SIGTERM). A decision model's JSON windows carry a plausible decision context (its .npy
windows cannot, so only JSON is sent). Everything is
bounded: a request times out after 30 s, the whole run after ``--deadline`` seconds. The client
runs on the same machine (it competes with the server for the CPUs).

Peak RSS is the server process's high-water mark (``VmHWM``), read before it stops; the job
worker processes (``--workers``, idle here) are listed apart.

For comparison it also times, in this process, one window through ``Predictor.predict`` (Keras'
``model.predict``: what a naive service calls per request) and through ``predict_on_batch`` (what
the service calls).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import cpu_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Child processes started by any of ``pid``'s threads (the job workers come from a thread)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def window(seed: int) -> np.ndarray:
    """A plausible clinical window (values inside every feature's range)."""
    rng = np.random.default_rng(seed)
    mid = np.array([75, 120, 70, 90, 98, 4.5, 45, 6, 0.2, 0.05, 7, 5, 50, 12, 2, 2.5])
    return np.round(mid * rng.uniform(0.9, 1.1, size=(300, 16)), 3)


STATIC = [63, "M", 181, 84.5, None, 3]


def decision_context(seed: int, sizes: dict[str, int]) -> dict[str, list[float]]:
    """A decision model's JSON ``context`` for one window (normalized; every set-point known)."""
    rng = np.random.default_rng(seed)
    return {name: (np.ones(n) if name.endswith("_known") else np.round(rng.uniform(-0.5, 0.5, n), 4)).tolist()
            for name, n in sizes.items()}


async def run_load(url: str, kind: str, requests: int, concurrency: int, outputs: int = 8,
                   context: dict[str, int] | None = None) -> dict:
    """``outputs``: the model's columns per window; ``context``: a decision model's context sizes."""
    import httpx

    bodies = []
    for i in range(16):  # a few distinct windows, reused
        w = window(i)
        if kind == "json":
            document = {"timeseries": w.tolist(), "static": STATIC}
            if context:
                document["context"] = decision_context(i, context)
            bodies.append((json.dumps(document).encode(),
                           {"Content-Type": "application/json"}, None))
        else:
            buffer = io.BytesIO()
            np.save(buffer, w.astype(np.float32))
            bodies.append((buffer.getvalue(), {"Content-Type": "application/x-npy"}, {"static": "63,M,181,84.5,,3"}))
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            for i in counter:
                body, headers, params = bodies[i % len(bodies)]
                t = time.perf_counter()
                try:
                    r = await c.post("/invocations", content=body, headers=headers, params=params)
                    ok = r.status_code == 200 and len(r.json()["predictions"][0]) == outputs
                    if not ok:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                latencies.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"kind": kind, "concurrency": concurrency, "requests": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "wall_s": round(wall, 2), "throughput_rps": round(len(latencies) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def in_process(model: str, repeats: int = 200) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import vitalflow

    predictor = vitalflow.load_model(model)
    ts = np.zeros((1, 300, 16), np.float32)
    st = np.zeros((1, 6), np.float32)
    out = {}
    if predictor.task == "decisions":
        shapes = {n: predictor.model.get_layer(n).output.shape[1:] for n in predictor.card.inputs}
        inputs = {n: np.zeros((1, *shapes[n]), np.float32) for n in predictor.card.inputs}
        context = {n: v for n, v in inputs.items() if n not in ("timeseries", "static")}
        steps = (("Predictor.predict_decisions (model.predict, stack, gates)",
                  lambda: predictor.predict_decisions(ts, st, context=context)),
                 ("model.predict_on_batch", lambda: predictor.model.predict_on_batch(inputs)))
    else:
        steps = (("Predictor.predict (model.predict)", lambda: predictor.predict(ts, st)),
                 ("model.predict_on_batch", lambda: predictor.model.predict_on_batch({"timeseries": ts, "static": st})))
    for name, fn in steps:
        for _ in range(3):
            fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = round(float(np.median(times)) * 1000, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="Model directory (or NAME@ALIAS).")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", default="1,4", help="Comma-separated client counts (default 1,4).")
    p.add_argument("--kinds", default="json,npy")
    p.add_argument("--deadline", type=float, default=600, help="Stop everything after this many seconds.")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    started = time.monotonic()
    from vitalflow.model.card import read_model_card
    from vitalflow.predict.table import context_inputs, output_columns
    from vitalflow.serve.inputs import context_sizes

    outputs, context = 8, None  # a value model's, or a registry reference's (assumed a value model)
    if Path(a.model).is_dir():
        model_card = read_model_card(a.model)
        outputs = len(output_columns(model_card))
        wanted = context_inputs(model_card)
        context = {n: size for n, size in context_sizes(model_card.spec.load()).items() if n in wanted} or None
    kinds = [k for k in a.kinds.split(",") if not (context and k == "npy")]  # .npy carries no context
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="vitalflow-bench-serve-"))
    log = open(state / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "vitalflow", "serve", "--model", a.model, "--port", str(port),
                               "--state-dir", str(state)], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    url = f"http://127.0.0.1:{port}"
    results = []
    try:
        import httpx

        t = time.perf_counter()
        while True:
            if server.poll() is not None or time.monotonic() - started > a.deadline:
                raise SystemExit(f"the server did not start: {(state / 'serve.log').read_text()}")
            try:
                if httpx.get(url + "/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        ready_s = time.perf_counter() - t
        while httpx.get(url + "/ping", timeout=2).json().get("compiled_batches") != [1, 2, 4, 8]:
            if time.monotonic() - started > a.deadline:  # the service answers meanwhile, only slower
                raise SystemExit("XLA did not compile the small batch sizes in time (see serve.log)")
            time.sleep(0.1)
        warm_s = time.perf_counter() - t
        for kind in kinds:
            for c in map(int, a.concurrency.split(",")):
                remaining = a.deadline - (time.monotonic() - started)
                results.append(asyncio.run(asyncio.wait_for(run_load(url, kind, a.requests, c, outputs, context),
                                                            remaining)))
        rss = vm_hwm_mb(server.pid)
        workers = [round(vm_hwm_mb(pid)) for pid in children(server.pid)]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    local = in_process(a.model)
    card = json.loads((Path(a.model) / "model_card.json").read_text()) if Path(a.model).is_dir() else {}
    machine = {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version()}
    print(f"machine: {machine['cpu']}, {machine['cpus']} CPUs (shared), Python {machine['python']}; model "
          f"{a.model} ({card.get('parameters', '?')} parameters); server ready {ready_s:.1f} s after start, XLA-compiled {warm_s:.1f} s; "
          f"one window per request, {a.requests} requests per row\n")
    print("| body | clients | requests | errors | throughput req/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['kind']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['throughput_rps']} | "
              f"{r['p50_ms']} | {r['p99_ms']} |")
    print(f"\npeak RSS: server {rss:.0f} MB; child processes (job workers, multiprocessing's helper) {workers} MB")
    print("in-process, one window (median ms): " + ", ".join(f"{k} {v}" for k, v in local.items()))
    for r in results:
        if r["errors"]:
            print(f"errors in {r['kind']} x{r['concurrency']}: {r['first_errors']}", file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps({"machine": machine, "model": a.model, "parameters": card.get("parameters"),
                                      "ready_s": round(ready_s, 1), "xla_compiled_s": round(warm_s, 1), "results": results, "server_peak_rss_mb": rss,
                                      "worker_peak_rss_mb": workers, "in_process_ms": local}, indent=1))
    if any(r["errors"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
