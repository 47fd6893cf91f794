"""Which cases a run processes: the selection syntax and the files that hold them."""

from __future__ import annotations

import re

from vitalflow.errors import CaseSelectionError

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_case_selection(text: str) -> list[int]:
    """Parse ``"1-10,17,0022"`` into sorted unique case ids.

    >>> parse_case_selection("3-5, 0022,4,17")
    [3, 4, 5, 17, 22]
    >>> parse_case_selection("5-1")
    Traceback (most recent call last):
    ...
    vitalflow.errors.CaseSelectionError: case range '5-1' runs backwards (did you mean 1-5?)
    """
    if not text or not text.strip():
        raise CaseSelectionError("case selection is empty (expected e.g. '1-10,17,0022')")
    ids: set[int] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise CaseSelectionError(f"case selection {text!r} has an empty item")
        m = _ITEM.match(item)
        if not m:
            raise CaseSelectionError(
                f"case selection item {item!r} is not a case id or a range like '1-10'"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise CaseSelectionError(f"case range {item!r} runs backwards (did you mean {hi}-{lo}?)")
        ids.update(range(lo, hi + 1))
    return sorted(ids)
