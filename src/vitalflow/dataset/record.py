"""The base of every record vitalflow writes (card, ledger records, their parts): a pydantic model
that refuses unknown keys, and reads by attribute or, like the JSON it is written as, by key."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer

from vitalflow.errors import OutputError, one_line


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getitem__(self, key: str) -> Any:
        """``card["cases"]["failed"]`` reads what ``card.cases.failed`` does (code written against the JSON)."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    @classmethod
    def load(cls, data: bytes, where: str, what: str):
        """Validate a JSON file's bytes; damage or an unknown format is an `OutputError` naming ``where``."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise OutputError(f"{where}: unreadable {what} ({one_line(exc)})") from exc

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in type(self).model_fields else default

    def to_json(self, **dumps) -> bytes:
        """The record as a JSON file's bytes (``dumps``: options of `json.dumps`; no NaN)."""
        return (json.dumps(self.model_dump(mode="json"), allow_nan=False, **dumps) + "\n").encode()


class Tool(Record):
    """What wrote a card: vitalflow and its version, and for a model the frameworks that can read it
    back (TensorFlow and Keras; absent, not null, in the other cards).

    >>> Tool(name="vitalflow", version="0.1").model_dump()
    {'name': 'vitalflow', 'version': '0.1'}
    """

    name: str
    version: str
    tensorflow: str | None = None
    keras: str | None = None

    @model_serializer(mode="wrap")
    def _without_absent_frameworks(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}
