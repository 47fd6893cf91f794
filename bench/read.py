"""Time reading the numeric tracks of 3.5-hour cases with waves: inflate only, vitaldb, the new reader.

    .venv/bin/python bench/read.py [--cases 6] [--hours 3.5] [--repeat 7] [--corpus bench/.corpus-read]

Builds (and caches) ``synth_corpus(corpus, cases, seed=5, hours=hours, waves=True)`` (odd case
ids interleaved, even ones packed), then times per case, median of ``--repeat`` runs:

- (a) reading the file and inflating its whole gzip stream, nothing else, with the stdlib
  ``zlib`` and with ``isal`` and ``zlib-ng`` where installed (as the reader does it: one
  decompressobj call);
- (b) ``vitaldb.VitalFile(path, track_names=spec tracks)`` plus pulling the records out (what
  ``read_vital`` did after its gzip check; in packed files vitaldb stops inflating after the last
  wanted track's block, so it never inflates the waves there);
- (b+) the old ``read_vital``: the stdlib gzip check (a whole inflate) and then (b);
- (c) the new reader, `vitalflow.vital.fastread.read_numeric_tracks`.

The methods take turns within each repeat, so a slow spell of the machine hits them alike.
Prints a table (ms per case) and the ratios c/a (against the inflater the reader uses and the
stdlib) and b/c, b+/c; the last line of stdout is the whole result as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from vitalflow.spec import load_spec
from vitalflow.vital import fastread
from corpus import cached_corpus


def _inflaters() -> dict[str, object]:
    mods: dict[str, object] = {"zlib": zlib}
    try:
        from isal import isal_zlib

        mods["isal"] = isal_zlib
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng

        mods["zlib-ng"] = zlib_ng
    except ImportError:
        pass
    return mods


def _vitaldb_read(path: Path, names: list[str]) -> dict:
    import vitaldb

    with contextlib.redirect_stdout(io.StringIO()):
        vf = vitaldb.VitalFile(str(path), track_names=names)
    start = float(vf.dtstart)
    out = {}
    for name in names:
        trk = vf.trks.get(name)
        if trk is None or trk.type != 2 or not trk.recs:
            continue
        n = len(trk.recs)
        times = np.fromiter((r["dt"] for r in trk.recs), dtype=np.float64, count=n) - start
        values = np.fromiter((r["val"] for r in trk.recs), dtype=np.float64, count=n)
        out[name] = (times, values)
    return out


def _stdlib_check(path: Path) -> None:
    with open(path, "rb") as f:
        fastread._inflate_with(zlib, f.read())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--hours", type=float, default=3.5)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--corpus", type=Path, default=Path(__file__).parent / ".corpus-read")
    args = ap.parse_args()
    paths = cached_corpus(args.corpus, args.cases, 5, args.hours, True)
    names = list(load_spec().tracks)
    mods = _inflaters()
    used = fastread.INFLATER
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"corpus: {len(paths)} cases x {args.hours} h with waves, {size:.0f} MB gzip; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"reader inflates with {used}; median of {args.repeat} runs, ms per case")

    rows = []
    for path in paths:
        raw = path.read_bytes()
        row: dict = {"case": path.name, "layout": "interleaved" if int(path.stem) % 2 else "packed",
                     "gzip_mb": round(len(raw) / 1e6, 1)}
        data = fastread.inflate(raw)
        row["vital_mb"] = round(len(data) / 1e6, 1)
        del data, raw
        methods = {f"inflate_{name}": (lambda mod=mod: fastread._inflate_with(mod, path.read_bytes()))
                   for name, mod in mods.items()}
        methods["vitaldb"] = lambda: _vitaldb_read(path, names)
        methods["stdlib_check"] = lambda: _stdlib_check(path)
        methods["new"] = lambda: fastread.read_numeric_tracks(path, names)
        samples: dict[str, list[float]] = {key: [] for key in methods}
        for _ in range(args.repeat):  # interleaved, so that a slow spell of the machine hits all
            for key, fn in methods.items():
                t = time.perf_counter()
                fn()
                samples[key].append((time.perf_counter() - t) * 1e3)
        for key, values in samples.items():
            row[key] = statistics.median(values)
        row["old_read_vital"] = row["vitaldb"] + row.pop("stdlib_check")
        rows.append(row)

    inflate_cols = [f"inflate_{name}" for name in mods]
    cols = inflate_cols + ["vitaldb", "old_read_vital", "new"]
    head = f"{'case':<11}{'layout':<12}{'MB':>10}" + "".join(f"{c:>16}" for c in cols)
    head += f"{'new/inflate':>13}{'new/zlib':>10}{'vitaldb/new':>13}{'old/new':>9}"
    print(head)
    for row in rows:
        line = f"{row['case']:<11}{row['layout']:<12}{row['gzip_mb']:>4}/{row['vital_mb']:<5}"
        line += "".join(f"{row[c]:>16.0f}" for c in cols)
        row["new_over_inflate"] = row["new"] / row[f"inflate_{used}"]
        row["new_over_zlib"] = row["new"] / row["inflate_zlib"]
        row["vitaldb_over_new"] = row["vitaldb"] / row["new"]
        row["old_over_new"] = row["old_read_vital"] / row["new"]
        line += f"{row['new_over_inflate']:>13.2f}{row['new_over_zlib']:>10.2f}"
        line += f"{row['vitaldb_over_new']:>13.2f}{row['old_over_new']:>9.2f}"
        print(line)
    summary = {}
    for key in cols + ["new_over_inflate", "new_over_zlib", "vitaldb_over_new", "old_over_new"]:
        summary[key] = statistics.median(r[key] for r in rows)
    for layout in ("interleaved", "packed"):
        sub = [r for r in rows if r["layout"] == layout]
        if sub:
            summary[f"new_over_inflate_{layout}"] = statistics.median(r["new_over_inflate"] for r in sub)
            summary[f"vitaldb_over_new_{layout}"] = statistics.median(r["vitaldb_over_new"] for r in sub)
    line = f"{'median':<23}" + "".join(f"{summary[c]:>16.0f}" for c in cols)
    line += f"{summary['new_over_inflate']:>13.2f}{summary['new_over_zlib']:>10.2f}"
    line += f"{summary['vitaldb_over_new']:>13.2f}{summary['old_over_new']:>9.2f}"
    print(line)
    cases = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    print(json.dumps({"inflater": used, "repeat": args.repeat, "tracks": len(names),
                      "summary": {k: round(v, 3) for k, v in summary.items()}, "cases": cases}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
