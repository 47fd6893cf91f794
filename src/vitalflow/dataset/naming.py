"""The names of an output's files: one template both formats and parses each kind.

Like TFDS's ``ShardedFileTemplate``, a name is made from fields by a format string, and parsed back
into the same fields by a pattern derived from that string, so the two cannot drift apart::

    train-00003-h0.tfrecord.gz            part: split, commit, host, compression
    train.tfrecord.gz                     merged file of a split (``--merge``)
    preprocessing_metadata.json           the card; preprocessing_metadata-h2.json: host 2's card
    _ledger/h0/commit-00003.json          ledger record of commit 3 of host 0 (and run.json, h0.lock)

Parsing accepts only names this template writes (``h01`` or ``train-0003`` are not names).

>>> NAMES.part("train", 3, "h0", "GZIP")
'train-00003-h0.tfrecord.gz'
>>> NAMES.parse_part("train-00003-h0.tfrecord.gz")
PartName(split='train', seq=3, host='h0', compression='GZIP')
>>> NAMES.parse_part("train-00003-h0.tfrecord.gz.incomplete") is None
True
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from vitalflow.spec.model import SPLITS

LEDGER = "_ledger"
_SUFFIX = {"none": ".tfrecord", "GZIP": ".tfrecord.gz"}  # by output.compression
_COMPRESSION = {suffix: compression for compression, suffix in _SUFFIX.items()}
_FIELDS = {  # what each field of a template may be when parsed: exactly what formatting writes
    "split": "|".join(SPLITS),
    "seq": r"\d{5}|[1-9]\d{5,}",  # {seq:05d}: five digits, more without a leading zero
    "host": r"h(?:0|[1-9]\d*)",
    "suffix": "|".join(re.escape(s) for s in _SUFFIX.values()),
}


@dataclass(frozen=True)
class PartName:
    split: str
    seq: int
    host: str
    compression: str  # "none" or "GZIP", as output.compression


@dataclass(frozen=True)
class MergedName:
    split: str
    compression: str


class _Template:
    """One format string, e.g. ``{split}-{seq:05d}-{host}{suffix}``, and its parsing pattern."""

    def __init__(self, template: str):
        self.template = template
        pattern = ""
        for literal, field, spec, _ in string.Formatter().parse(template):
            pattern += re.escape(literal)
            if field is not None:
                pattern += f"(?P<{field}>{_FIELDS[field]})"
        self.pattern = re.compile(pattern + r"\Z")

    def format(self, **fields) -> str:
        return self.template.format(**fields)

    def parse(self, name: str) -> dict | None:
        m = self.pattern.match(name)
        return m.groupdict() if m else None

    def glob(self, **known) -> str:
        """A glob pattern: the ``known`` fields formatted, any value for the others."""
        out = ""
        for literal, field, spec, _ in string.Formatter().parse(self.template):
            out += literal + ("" if field is None else format(known[field], spec) if field in known else "*")
        return re.sub(r"\*(?:-\*)+", "*", out)  # "train-*-*.tfrecord" matches what "train-*.tfrecord" does


@dataclass(frozen=True)
class FileTemplate:
    """The names of one output's files (see the module docstring)."""

    part_template: str = "{split}-{seq:05d}-{host}{suffix}"
    merged_template: str = "{split}{suffix}"
    card_template: str = "preprocessing_metadata.json"
    host_card_template: str = "preprocessing_metadata-{host}.json"
    commit_template: str = LEDGER + "/{host}/commit-{seq:05d}.json"
    manifest_template: str = LEDGER + "/{host}/run.json"

    def __post_init__(self) -> None:
        for name in ("part", "merged", "host_card", "commit"):
            object.__setattr__(self, f"_{name}", _Template(getattr(self, f"{name}_template")))

    # --- parts and merged files ---
    def part(self, split: str, seq: int, host: str, compression: str) -> str:
        """The name of a part: the examples of one commit of one host in one split.

        >>> NAMES.part("test", 12, "h1", "none")
        'test-00012-h1.tfrecord'
        """
        return self._part.format(split=_split(split), seq=seq, host=host, suffix=_suffix(compression))

    def parse_part(self, name: str) -> PartName | None:
        f = self._part.parse(name)
        return None if f is None else PartName(f["split"], int(f["seq"]), f["host"], _COMPRESSION[f["suffix"]])

    def part_glob(self, split: str, compression: str) -> str:
        """The parts of a split as a glob pattern (any commit, any host).

        >>> NAMES.part_glob("train", "GZIP")
        'train-*.tfrecord.gz'
        """
        return self._part.glob(split=_split(split), suffix=_suffix(compression))

    def merged(self, split: str, compression: str) -> str:
        """The one file of a split that ``--merge`` writes.

        >>> NAMES.merged("train", "GZIP")
        'train.tfrecord.gz'
        """
        return self._merged.format(split=_split(split), suffix=_suffix(compression))

    def parse_merged(self, name: str) -> MergedName | None:
        f = self._merged.parse(name)
        return None if f is None else MergedName(f["split"], _COMPRESSION[f["suffix"]])

    def split_of(self, name: str) -> str | None:
        """The split of a part or merged file (None for any other name).

        >>> NAMES.split_of("validation-00000-h2.tfrecord"), NAMES.split_of("test.tfrecord.gz")
        ('validation', 'test')
        """
        parsed = self.parse_part(name) or self.parse_merged(name)
        return parsed.split if parsed else None

    def merged_files(self) -> set[str]:
        """Every name a merged file can have."""
        return {self.merged(s, c) for s in SPLITS for c in _SUFFIX}

    # --- cards ---
    def card(self, host: str | None = None, host_count: int = 1) -> str:
        """The card of a whole output (``host`` None, or the only host); with several hosts each
        writes its own, and ``verify`` combines them into the output's card.

        >>> NAMES.card(), NAMES.card("h0", 1), NAMES.card("h2", 3)
        ('preprocessing_metadata.json', 'preprocessing_metadata.json', 'preprocessing_metadata-h2.json')
        """
        return self.card_template if host is None or host_count == 1 else self._host_card.format(host=host)

    def parse_card(self, name: str) -> str | None:
        """``""`` for the output's card, the host for a host's card, None for any other name.

        >>> NAMES.parse_card("preprocessing_metadata-h2.json"), NAMES.parse_card("preprocessing_metadata.json")
        ('h2', '')
        """
        if name == self.card_template:
            return ""
        f = self._host_card.parse(name)
        return None if f is None else f["host"]

    # --- the ledger ---
    def ledger_prefix(self, host: str) -> str:
        return f"{LEDGER}/{host}"

    def lock(self, host: str) -> str:
        return f"{LEDGER}/{host}.lock"

    def manifest(self, host: str) -> str:
        return self.manifest_template.format(host=host)

    def commit(self, host: str, seq: int) -> str:
        """The ledger record of a commit.

        >>> NAMES.commit("h0", 3)
        '_ledger/h0/commit-00003.json'
        """
        return self._commit.format(host=host, seq=seq)

    def parse_commit(self, name: str) -> tuple[str, int] | None:
        f = self._commit.parse(name)
        return None if f is None else (f["host"], int(f["seq"]))


def _split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return split


def _suffix(compression: str) -> str:
    if compression not in _SUFFIX:
        raise ValueError(f"unknown compression {compression!r} (expected {' or '.join(_SUFFIX)})")
    return _SUFFIX[compression]


NAMES = FileTemplate()
