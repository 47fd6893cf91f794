"""One window through a stacked decision model, in this process: what the stack adds to a request.

    .venv/bin/python bench/stack.py --model DIR --dataset OUT [--repeats 500]

Reads one test window (with its decision context) from the dataset, then times, ``--repeats``
times each after a warm-up: the network (``predict_on_batch``, what the service calls), the
XGBoost member (`Predictor.boosted_probabilities`: window summaries and 15 boosters) and the whole
answer (`Predictor.decisions_from_raw`: temperatures, the stack). Prints p50 and p99 in ms.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def timed(fn, repeats: int) -> tuple[float, float]:
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()
    import vitalflow
    from vitalflow.dataset.reference import open_dataset
    from vitalflow.model.inputs import numpy_batches

    predictor = vitalflow.load_model(args.model)
    batch = next(numpy_batches(open_dataset(args.dataset), "test", list(predictor.card.inputs), batch_size=1))
    inputs = {k: batch[k].astype(np.float32) for k in predictor.card.inputs}
    context = {k: v for k, v in inputs.items() if k not in ("timeseries", "static", "mask")}
    raw = np.asarray(predictor.model.predict_on_batch(inputs))
    rows = {
        "network (predict_on_batch)": lambda: predictor.model.predict_on_batch(inputs),
        "XGBoost member (boosted_probabilities)": lambda: predictor.boosted_probabilities(
            inputs["timeseries"], inputs["static"], context),
        "answer (decisions_from_raw, with the stack)": lambda: predictor.decisions_from_raw(
            raw, predictor.boosted_probabilities(inputs["timeseries"], inputs["static"], context)),
    }
    print(f"one window, {args.repeats} repeats; stacked: {predictor.boosters is not None}")
    print("| step | p50 ms | p99 ms |\n|---|---|---|")
    for name, fn in rows.items():
        p50, p99 = timed(fn, args.repeats)
        print(f"| {name} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
