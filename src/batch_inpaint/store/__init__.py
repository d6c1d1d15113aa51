"""Stores: the record of every item and run. `SqliteStore` is the embedded default; `MemoryStore` serves
unit tests and plans made before any manifest exists; `store.postgres.PostgresStore` is a fleet's
(imported where used: it needs the ``postgres`` extra)."""

from .base import (
    ANSWER_IN_OUTPUT, ANSWER_KEPT, BRIEF_COLUMNS, AnswerSource, Brief, Fingerprint, Flagged, ItemProblem, ItemRecord, ItemRow, OutputRecord, RunEnd, RunRecord, SeenItem,
    Store, STATUSES, LeaseLost,
)
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = ["ANSWER_IN_OUTPUT", "ANSWER_KEPT", "BRIEF_COLUMNS", "AnswerSource", "Brief", "Fingerprint", "Flagged", "ItemProblem", "ItemRecord", "ItemRow", "MemoryStore", "OutputRecord", "RunEnd",
           "LeaseLost", "RunRecord", "STATUSES", "SeenItem", "SqliteStore", "Store"]
