"""Skip or stop on bad records: one policy that every adapter's ``prepare`` consults.

By default (``on_bad_record="raise"``) the first bad record stops the run with a
:class:`~multissl.errors.DataError` naming it. With ``on_bad_record="skip"`` a long run drops
the bad records instead, counts them and says which they were::

    >>> from multissl.bad_records import BadRecordPolicy
    >>> policy = BadRecordPolicy("skip")
    >>> x = adapter.prepare("photos/", on_bad_record=policy)   # corrupt files left out
    >>> policy.count, policy.skipped[0].record, policy.skipped[0].reason
    (2, 'photos/b.png', 'cannot decode image (UnidentifiedImageError)')
    >>> labels = policy.drop_skipped(labels)                    # labels stay row-aligned

Only problems of *one record* are skipped (an undecodable or truncated file, an empty text, a
line that is not UTF-8, a NaN inside a series, a malformed signature file...). Problems of the
whole source — a wrong rank or dtype of an array, a missing column, data and labels of
different lengths — still raise, and so does a source in which every record was bad.

Adapters call the policy at the narrowest place that sees one record at a time: either around
the code that decodes it (``with policy.record(label, index): ...``), or, for checks computed
on a whole array at once, with :meth:`BadRecordPolicy.reject`.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from multissl.errors import ConfigError, DataError

#: the accepted values of ``on_bad_record``
ON_BAD_RECORD = ("raise", "skip")
#: how many (record, reason) pairs the one-line warning and the model config show
MAX_EXAMPLES = 5


class SkippedRecordsWarning(UserWarning):
    """Emitted once per data source when ``on_bad_record="skip"`` left records out."""


@dataclass(frozen=True)
class SkippedRecord:
    #: the file and/or record, as error messages name it ("imgs/b.png", "record 3", "a.csv line 7")
    record: str
    #: what was wrong with it
    reason: str
    #: its position in the input (row of an array / dataset, item of a list, file of a folder),
    #: for dropping the same rows of labels held alongside; None where the input has no such order
    index: Optional[int] = None


def check_on_bad_record(value: Any) -> str:
    """``value`` if it is a valid ``on_bad_record`` mode, else a :class:`ConfigError`."""
    if isinstance(value, BadRecordPolicy):
        return value.mode
    if value not in ON_BAD_RECORD:
        raise ConfigError(f"on_bad_record must be one of {', '.join(repr(v) for v in ON_BAD_RECORD)}, got {value!r}")
    return value


class BadRecordPolicy:
    """What to do with a bad record (``"raise"`` or ``"skip"``), and the records skipped so far."""

    def __init__(self, on_bad_record: str = "raise") -> None:
        self.mode = check_on_bad_record(on_bad_record)
        self.skipped: List[SkippedRecord] = []

    @classmethod
    def of(cls, value: Union[str, "BadRecordPolicy", None]) -> "BadRecordPolicy":
        """The policy itself, or a fresh one from a mode string (None: ``"raise"``)."""
        if isinstance(value, BadRecordPolicy):
            return value
        return cls("raise" if value is None else value)

    @property
    def skip(self) -> bool:
        return self.mode == "skip"

    @property
    def count(self) -> int:
        return len(self.skipped)

    # ---- called by adapters ------------------------------------------------------------------
    @contextmanager
    def record(self, label: str, index: Optional[int] = None) -> Iterator[None]:
        """Run the body for one record; a :class:`DataError` in it stops the run ("raise") or
        leaves the rest of the body out and counts the record ("skip"). Keep the body to the
        work of this one record, ending with the line that stores it::

            for i, (label, r) in enumerate(records):
                with policy.record(label, i):
                    out.append(decode(r, label))
        """
        try:
            yield
        except DataError as e:
            if not self.skip:
                raise
            self._add(label, str(e), index)

    def reject(self, label: str, reason: str, index: Optional[int] = None) -> None:
        """Record ``label`` as bad for ``reason``: raises ``DataError("label: reason")`` under
        "raise", counts it under "skip" (the caller then leaves the record out)."""
        if not self.skip:
            raise DataError(f"{label}: {reason}")
        self.skipped.append(SkippedRecord(label, reason, index))

    def nothing_left(self, what: str = "records") -> DataError:
        """The error for a source in which every record was skipped (raise it)."""
        return DataError(f"no {what} left: all {self.count} were bad and skipped; the first: {self._first()}")

    def check_left(self, kept: int, what: str = "records") -> None:
        """Raise :meth:`nothing_left` when records were skipped and none is left."""
        if kept == 0 and self.skipped:
            raise self.nothing_left(what)

    # ---- for callers -------------------------------------------------------------------------
    @property
    def skipped_indices(self) -> List[int]:
        return sorted({s.index for s in self.skipped if s.index is not None})

    def drop_skipped(self, rows: Any) -> Any:
        """``rows`` (labels or anything row-aligned with the input) without the skipped records' rows."""
        drop = self.skipped_indices
        if not drop:
            return rows
        if isinstance(rows, (list, tuple)):
            gone = set(drop)
            return type(rows)(r for i, r in enumerate(rows) if i not in gone)
        try:
            import torch

            if isinstance(rows, torch.Tensor):
                keep = torch.ones(len(rows), dtype=torch.bool)
                keep[drop] = False
                return rows[keep]
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        return np.delete(np.asarray(rows), drop, axis=0)

    def summary(self, max_examples: int = MAX_EXAMPLES) -> Dict[str, Any]:
        """``{"on_bad_record", "count", "first": [{"record", "reason"}, ...]}`` (JSON-ready)."""
        return {"on_bad_record": self.mode, "count": self.count,
                "first": [{"record": s.record, "reason": s.reason} for s in self.skipped[:max_examples]]}

    def to_json(self) -> Dict[str, Any]:
        """Every skipped record (for ``skipped_records.json``)."""
        return {"on_bad_record": self.mode, "count": self.count, "skipped": [asdict(s) for s in self.skipped]}

    def message(self, what: str = "records", max_examples: int = 3) -> str:
        """One line: ``skipped 2 bad records: a.png (cannot decode image ...); b.png (...)``."""
        shown = "; ".join(f"{s.record} ({s.reason})" for s in self.skipped[:max_examples])
        more = f"; and {self.count - max_examples} more" if self.count > max_examples else ""
        noun = what[:-1] if self.count == 1 and what.endswith("s") else what
        return f"skipped {self.count} bad {noun}: {shown}{more}"

    def warn(self, what: str = "records", stacklevel: int = 3) -> None:
        """A one-line :class:`SkippedRecordsWarning` when anything was skipped."""
        if self.skipped:
            warnings.warn(self.message(what), SkippedRecordsWarning, stacklevel=stacklevel)

    # ---- internals ---------------------------------------------------------------------------
    def _add(self, label: str, message: str, index: Optional[int]) -> None:
        reason = message
        if message.startswith(label):  # "imgs/b.png: cannot decode" -> "cannot decode"
            reason = message[len(label):].lstrip(": ") or message
        self.skipped.append(SkippedRecord(label, reason, index))

    def _first(self) -> str:
        s = self.skipped[0]
        return f"{s.record}: {s.reason}"

    def __repr__(self) -> str:
        return f"BadRecordPolicy({self.mode!r}, skipped={self.count})"


@contextmanager
def prepare_scope(on_bad_record: Union[str, BadRecordPolicy, None], what: str = "records") -> Iterator[BadRecordPolicy]:
    """For an adapter's ``prepare``: the caller's policy as is, or a fresh one from a mode string
    that, when the preparation succeeds, warns once about what it skipped. (A caller that passes a
    policy object reads ``policy.skipped`` itself and reports it its own way.)"""
    owned = not isinstance(on_bad_record, BadRecordPolicy)
    policy = BadRecordPolicy.of(on_bad_record)
    yield policy
    if owned:
        policy.warn(what, stacklevel=5)  # warn, scope, contextlib, prepare, its caller


def accepts_on_bad_record(prepare: Any) -> bool:
    """Whether an adapter's ``prepare`` takes ``on_bad_record=`` (third-party adapters may not)."""
    import inspect

    try:
        params = inspect.signature(prepare).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return "on_bad_record" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def prepare_with_policy(adapter: Any, data: Any, policy: BadRecordPolicy) -> Any:
    """``adapter.prepare(data)`` under ``policy``; an adapter without ``on_bad_record`` support
    still works under "raise" and is a :class:`ConfigError` under "skip"."""
    if accepts_on_bad_record(adapter.prepare):
        return adapter.prepare(data, on_bad_record=policy)
    if policy.skip:
        raise ConfigError(f"adapter {getattr(adapter, 'name', type(adapter).__name__)!r} does not support "
                          "on_bad_record='skip' (its prepare() has no on_bad_record argument)")
    return adapter.prepare(data)


__all__ = ["BadRecordPolicy", "SkippedRecord", "SkippedRecordsWarning", "ON_BAD_RECORD", "check_on_bad_record",
           "prepare_scope", "prepare_with_policy", "accepts_on_bad_record", "MAX_EXAMPLES"]
