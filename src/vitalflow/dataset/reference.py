"""`open_dataset`: a finished, verified output as the typed reference that training holds.

Opening reads only the card. It refuses (`OutputError`, with the reason and what to run) an output
that has no card, a partial run, and an output that was not verified, failed verification or
changed since. The `Dataset` names its files by URI, its fingerprint and its example schema, so a
model can record exactly what it was trained on.
"""

from __future__ import annotations

from pydantic import ConfigDict

from vitalflow.dataset.card import CARD_NAME, DatasetCard, read_card
from vitalflow.dataset.naming import NAMES
from vitalflow.dataset.parts import FileEntry
from vitalflow.dataset.record import Record
from vitalflow.dataset.schema import ExampleSchema
from vitalflow.errors import OutputError
from vitalflow.spec.model import SPLITS
from vitalflow.store import Store


class DatasetFile(Record):
    """A part (or merged file) of a split: its name in the output and its full URI."""

    split: str
    path: str
    uri: str
    examples: int
    bytes: int
    sha256: str


class Dataset(Record):
    """A verified, complete output (frozen): what a training run reads and records."""

    model_config = ConfigDict(frozen=True)

    uri: str
    fingerprint: str
    example_schema: ExampleSchema
    compression: str  # output.compression: "none" or "GZIP"
    parts: dict[str, tuple[DatasetFile, ...]]  # per split, in name order
    merged: dict[str, DatasetFile]  # per split, when ``--merge`` wrote them
    card: DatasetCard

    def files(self, split: str) -> list[str]:
        """The URIs of a split's parts, to read in this order."""
        return [f.uri for f in self.parts[split]]

    def examples(self, split: str) -> int:
        return sum(f.examples for f in self.parts[split])


def open_dataset(uri: str) -> Dataset:
    """The dataset at ``uri`` (a folder or s3:// prefix) if it is complete and verified as it is."""
    store = Store(uri)
    if not store.exists(CARD_NAME):
        hosts = sorted(h for h in (NAMES.parse_card(n) for n in store.list()) if h)
        if hosts:
            raise OutputError(f"{store.uri}: only the cards of hosts {', '.join(hosts)}: run `vitalflow verify "
                              f"{store.uri}` once every host has finished, to combine them")
    card = read_card(store)
    where = store.url(CARD_NAME)
    if card.status != "complete":
        raise OutputError(f"{where}: the run is partial ({card.cases.pending} of {card.cases.selected} cases not "
                          "done): resume it (rerun the same preprocess command)")
    check = card.verification
    if check is None:
        raise OutputError(f"{where}: the output was not verified: run `vitalflow verify {store.uri}`")
    if not check.ok:
        raise OutputError(f"{where}: the output failed verification on {check.verified_utc} ({check.problems} "
                          f"problems): run `vitalflow verify {store.uri}` to see them")
    if card.fingerprint is None:
        raise OutputError(f"{where}: no fingerprint (its ledger records no block hashes: an earlier vitalflow "
                          "wrote it): rerun preprocess with --overwrite")
    if check.fingerprint != card.fingerprint:
        raise OutputError(f"{where}: the card changed since it was verified: run `vitalflow verify {store.uri}`")

    def entry(split: str, f: FileEntry) -> DatasetFile:
        return DatasetFile(split=split, path=f.path, uri=store.url(f.path), examples=f.examples, bytes=f.bytes,
                           sha256=f.sha256)

    return Dataset(
        uri=store.uri, fingerprint=card.fingerprint, example_schema=card.example_schema, compression=card.compression,
        parts={s: tuple(entry(s, f) for f in card.files.get(s, [])) for s in SPLITS},
        merged={s: entry(s, f) for s, f in card.merged.items()}, card=card.model_copy(deep=True),
    )
