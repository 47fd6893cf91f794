"""Which cases a run processes: the selection syntax, kept as ranges (never expanded)."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from vitalflow.errors import CaseSelectionError

_ITEM = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")  # ASCII digits only: str.isdigit() and \d accept '٣'


@dataclass(frozen=True)
class CaseSelection:
    """Sorted, disjoint, non-adjacent inclusive ranges of case ids.

    Memory and time depend on the number of ranges, not on the number of ids: ``1-100000000``
    is one range, checked against the files that exist (`among`) without listing its ids.
    """

    ranges: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, ids: Iterable[int]) -> CaseSelection:
        """The selection of exactly ``ids``.

        >>> CaseSelection.of([5, 1, 2, 3, 9]).text
        '1-3,5,9'
        """
        return cls(_merge((i, i) for i in ids))

    def __contains__(self, case_id: int) -> bool:
        k = bisect.bisect_right(self.ranges, (case_id, float("inf"))) - 1
        return k >= 0 and self.ranges[k][0] <= case_id <= self.ranges[k][1]

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    @property
    def text(self) -> str:
        """The canonical selection string (what the manifest and the card record)."""
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)

    def among(self, available: Iterable[int]) -> list[int]:
        """The selected ids that are in ``available``, sorted.

        >>> parse_case_selection("2-4,9").among([1, 3, 4, 9, 10])
        [3, 4, 9]
        """
        return sorted(c for c in set(available) if c in self)

    def without(self, present: Iterable[int]) -> CaseSelection:
        """The selected ids not in ``present`` (the ranges of the selection minus those ids).

        >>> parse_case_selection("1-10").without([3, 4, 10, 99]).text
        '1-2,5-9'
        """
        out: list[tuple[int, int]] = []
        cut = sorted(c for c in set(present) if c in self)
        for lo, hi in self.ranges:
            start = lo
            for c in cut[bisect.bisect_left(cut, lo) : bisect.bisect_right(cut, hi)]:
                if c > start:
                    out.append((start, c - 1))
                start = c + 1
            if start <= hi:
                out.append((start, hi))
        return CaseSelection(tuple(out))

    def head(self, max_ranges: int = 20) -> str:
        """The text of the first ``max_ranges`` ranges (with "..." when there are more), for messages."""
        more = ",..." if len(self.ranges) > max_ranges else ""
        return CaseSelection(self.ranges[:max_ranges]).text + more


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def parse_case_selection(text: str) -> CaseSelection:
    """Parse ``"1-10,17,0022"`` (ASCII digits, any zero padding, duplicates allowed).

    >>> list(parse_case_selection("3-5, 0022,4,17"))
    [3, 4, 5, 17, 22]
    >>> parse_case_selection("1-100000000").text, len(parse_case_selection("1-100000000"))
    ('1-100000000', 100000000)
    >>> parse_case_selection("5-1")
    Traceback (most recent call last):
    ...
    vitalflow.errors.CaseSelectionError: case range '5-1' runs backwards (did you mean 1-5?)
    """
    if not text or not text.strip():
        raise CaseSelectionError("case selection is empty (expected e.g. '1-10,17,0022')")
    ranges = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise CaseSelectionError(f"case selection {text!r} has an empty item")
        m = _ITEM.match(item)
        if not m:
            raise CaseSelectionError(
                f"case selection item {item!r} is not a case id or a range like '1-10' (ASCII digits only)"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise CaseSelectionError(f"case range {item!r} runs backwards (did you mean {hi}-{lo}?)")
        ranges.append((lo, hi))
    return CaseSelection(_merge(ranges))
