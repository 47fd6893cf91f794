"""Peak memory of a preprocessing run on 4-hour cases with waves, at 1 and at 2 workers.

    .venv/bin/python bench/memory.py [--cases 6] [--hours 4] [--corpus bench/.corpus-memory]

Builds (and caches) the corpus, runs ``preprocess`` once per worker count into a fresh output and
prints the peak RSS of the main process and of the largest worker, as recorded in the card.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from corpus import cached_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).parent / ".corpus-memory")
    args = ap.parse_args()
    size = sum(p.stat().st_size for p in cached_corpus(args.corpus, args.cases, 4, args.hours, True)) / 1e6
    print(f"corpus: {args.cases} cases x {args.hours} h with waves, {size:.0f} MB; "
          f"{platform.processor() or platform.machine()}, {platform.python_version()}")
    results = []
    for workers in (1, 2):
        out = args.corpus.parent / f".out-memory-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vitalflow", "preprocess", "--input", str(args.corpus),
                        "--clinical", str(args.corpus / "clinical.csv"), "--output", str(out),
                        "--workers", str(workers), "--quiet"], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        card = json.loads((out / "preprocessing_metadata.json").read_text())
        rss = card["run"]["peak_rss_mb"]
        results.append({"workers": workers, "wall_s": round(wall, 1), **rss})
        print(f"workers={workers}: wall {wall:.1f} s, peak RSS main {rss['main']:.0f} MB, "
              f"largest worker {rss['largest_worker']:.0f} MB")
        shutil.rmtree(out)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
