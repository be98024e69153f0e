"""Reading text corpora: lists of strings, CSV/TSV/plain-text files and ``datasets.Dataset``.

Every reader returns :class:`TextRecords`: the texts, optionally their labels, and where each
came from (``"spam.tsv line 12"``, ``"record 3"``) so an error names the exact record. Files
are decoded as strict UTF-8 (a byte-order mark is allowed); a bad byte is reported with its
1-based line number.

File layouts, chosen from the extension and the first line:

- ``.csv``: comma-separated, standard quoting (``""`` inside quoted fields), a header line;
- ``.tsv`` / ``.tab``: tab-separated, **no quoting** (SMS corpora contain bare ``"``), a header line;
- a header-less ``label<TAB>text`` file such as the SMS Spam Collection (``SMSSpamCollection``:
  no extension, two fields per line): recognised when the first line's fields are not column
  names the caller asked for; columns are then called ``label`` and ``text``;
- ``column_names=[...]`` names the columns of any header-less file (e.g. AG News'
  ``"class","title","description"``);
- a ``.txt`` (or extension-less) file without tabs: one text per line.

A text column may be a list of columns (``["title", "description"]``), joined with ``" "``.

Every reader takes ``policy``, a :class:`~multissl.bad_records.BadRecordPolicy`: under "skip" a
bad record (empty or whitespace-only text, missing label, a line that is not UTF-8, a line
with the wrong number of fields) is left out and counted instead of raising; problems of the
whole source (no such column, an empty file) still raise.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Set, Tuple, Union

from multissl.bad_records import BadRecordPolicy
from multissl.errors import DataError

#: the column read when none is named (else the only string column of a dataset)
DEFAULT_TEXT_COLUMN = "text"
#: column names of a header-less ``label<TAB>text`` file (the SMS Spam Collection layout)
LABEL_TEXT_COLUMNS = ("label", "text")

Columns = Union[str, Sequence[str], None]


@dataclass
class TextRecords:
    texts: List[str]
    labels: Optional[List[str]]
    #: where each record came from, for error messages ("file line 3" / "record 3")
    where: List[str]


def _columns(column: Columns) -> Optional[List[str]]:
    if column is None:
        return None
    if isinstance(column, str):
        return [c.strip() for c in column.split(",")] if "," in column else [column]
    return [str(c) for c in column]


def _check_text(text: Any, where: str, column: str) -> str:
    if text is None:
        raise DataError(f"{where}: missing text in column {column!r}")
    if not isinstance(text, str):
        raise DataError(f"{where}: column {column!r} holds {type(text).__name__}, not text")
    if not text.strip():
        raise DataError(f"{where}: empty text in column {column!r}")
    return text


def _join(parts: Sequence[Any], where: str, names: Sequence[str]) -> str:
    """Join several text columns; a record is empty only if all of them are."""
    pieces = []
    for value, name in zip(parts, names):
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(f"{where}: column {name!r} holds {type(value).__name__}, not text")
        if value.strip():
            pieces.append(value.strip() if len(names) > 1 else value)
    return _check_text(" ".join(pieces) if pieces else "", where, "+".join(names))


def _label(value: Any, where: str, column: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: missing label in column {column!r}")
    return str(value).strip()


# ---------------------------------------------------------------------------- in-memory
def _collect(rows: Any, policy: Optional[BadRecordPolicy], labelled: bool) -> TextRecords:
    """TextRecords from (where, index, make) rows, ``make()`` returning (text, label or None);
    a DataError from ``make`` stops or skips that row according to ``policy``."""
    policy = BadRecordPolicy.of(policy)
    texts: List[str] = []
    labels: List[str] = []
    where: List[str] = []
    for loc, index, make in rows:
        with policy.record(loc, index):
            text, label = make()
            texts.append(text)
            if labelled:
                labels.append(label)
            where.append(loc)
    policy.check_left(len(texts), "texts")
    return TextRecords(texts, labels if labelled else None, where)


def from_strings(data: Sequence[Any], label_data: Optional[Sequence[Any]] = None,
                 policy: Optional[BadRecordPolicy] = None) -> TextRecords:
    if len(data) == 0:
        raise DataError("no texts: the list is empty")
    if label_data is not None and len(label_data) != len(data):
        raise DataError(f"{len(data)} texts but {len(label_data)} labels")

    def row(i: int):
        def make():
            text = _check_text(data[i], f"record {i}", "text")
            return text, (_label(label_data[i], f"record {i}", "label") if label_data is not None else None)
        return f"record {i}", i, make

    return _collect((row(i) for i in range(len(data))), policy, label_data is not None)


def from_dataset(ds: Any, column: Columns = None, label_column: Optional[str] = None,
                 policy: Optional[BadRecordPolicy] = None) -> TextRecords:
    import datasets

    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise DataError(f"a DatasetDict with splits {', '.join(ds.keys())}: pass one split, e.g. "
                        f"data['{next(iter(ds.keys()))}']")
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"unsupported dataset type {type(ds).__name__}; pass a datasets.Dataset")
    names = _columns(column)
    if names is None:
        if DEFAULT_TEXT_COLUMN in ds.column_names:
            names = [DEFAULT_TEXT_COLUMN]
        else:
            strings = [k for k, f in ds.features.items() if isinstance(f, datasets.Value) and f.dtype in ("string", "large_string")]
            if len(strings) != 1:
                raise DataError(f"dataset has no {DEFAULT_TEXT_COLUMN!r} column and {len(strings)} string columns "
                                f"(columns: {', '.join(ds.column_names)}); name the text column (column=...)")
            names = strings
    for c in names + ([label_column] if label_column else []):
        if c not in ds.column_names:
            raise DataError(f"dataset has no column {c!r} (columns: {', '.join(ds.column_names)})")
    if len(ds) == 0:
        raise DataError("no texts: the dataset is empty")
    cols = [ds[c] for c in names]
    raw = ds[label_column] if label_column else None
    class_names = getattr(ds.features[label_column], "names", None) if label_column else None

    def row(i: int, parts: Sequence[Any]):
        loc = f"record {i}"

        def make():
            text = _join(parts, loc, names)
            if raw is None:
                return text, None
            v = raw[i]
            return text, _label(class_names[v] if class_names and isinstance(v, int) else v, loc, label_column)
        return loc, i, make

    return _collect((row(i, parts) for i, parts in enumerate(zip(*cols))), policy, bool(label_column))


def from_dataframe(df: Any, column: Columns = None, label_column: Optional[str] = None,
                   policy: Optional[BadRecordPolicy] = None) -> TextRecords:
    import datasets

    return from_dataset(datasets.Dataset.from_pandas(df, preserve_index=False), column, label_column, policy)


# ---------------------------------------------------------------------------- files
def _decode(path: Path, policy: Optional[BadRecordPolicy] = None) -> Tuple[str, Set[int]]:
    """The file's text and the 1-based numbers of the lines left out because they are not UTF-8
    (under a "skip" policy; those lines are blank in the text, so line numbers still match)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None
    dropped: Set[int] = set()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        if policy is None or not policy.skip:
            raise DataError(f"{path} line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                            "convert the file to UTF-8") from None
        text, dropped = _decode_lines(path, raw, policy)
    if not text.strip():
        if dropped:
            raise policy.nothing_left("texts")
        raise DataError(f"{path}: the file is empty")
    return text, dropped


def _decode_lines(path: Path, raw: bytes, policy: BadRecordPolicy) -> Tuple[str, Set[int]]:
    """Line by line, each line that is not UTF-8 counted as a bad record and blanked."""
    parts, dropped, offset = [], set(), 0
    for no, line in enumerate(raw.splitlines(keepends=True), start=1):
        body = line.rstrip(b"\r\n")
        try:
            parts.append(line.decode("utf-8-sig" if no == 1 else "utf-8"))
        except UnicodeDecodeError as e:
            policy.reject(f"{path} line {no}", f"not valid UTF-8 (byte 0x{line[e.start]:02x} at offset "
                                               f"{offset + e.start})")
            dropped.add(no)
            parts.append(line[len(body):].decode("ascii"))  # keep the line break: numbering stays
        offset += len(line)
    return "".join(parts), dropped


def _rows(path: Path, text: str, delimiter: str):
    """(line number, fields) of every non-blank line; quoting off for tab-separated files."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    start = 1
    try:
        for fields in reader:
            line = start
            start = reader.line_num + 1
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line (e.g. at the end of the file)
            yield line, fields
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: malformed {'CSV' if delimiter == ',' else 'TSV'} ({e})") from None


def from_file(path: Union[str, os.PathLike], column: Columns = None, label_column: Optional[str] = None,
              column_names: Optional[Sequence[str]] = None, policy: Optional[BadRecordPolicy] = None) -> TextRecords:
    """Texts (and labels) of one file; see the module docstring for the layouts."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a CSV, TSV or text file")
    content, dropped = _decode(path, policy)
    suffix = path.suffix.lower()
    first_line = content.lstrip("\ufeff").split("\n", 1)[0]
    if suffix == ".csv":
        delimiter = ","
    elif suffix in (".tsv", ".tab") or "\t" in first_line:
        delimiter = "\t"
    elif suffix in (".txt", "") and column_names is None:
        return _lines(path, content, label_column, dropped, policy)
    else:
        delimiter = ","
    rows = _rows(path, content, delimiter)
    wanted = _columns(column) or [DEFAULT_TEXT_COLUMN]
    if column_names is not None:
        header = [str(c) for c in column_names]
    else:
        try:
            first_no, first = next(rows)
        except StopIteration:
            raise DataError(f"{path}: the file is empty") from None
        stripped = [f.strip() for f in first]
        asked = set(wanted) | ({label_column} if label_column else set())
        if asked <= set(stripped):
            header = stripped
        elif delimiter == "\t" and len(first) == 2 and not (asked & set(stripped)):
            # header-less label<TAB>text (SMS Spam Collection); the first line is data
            header = list(LABEL_TEXT_COLUMNS)
            rows = _chain([(first_no, first)], rows)
        else:
            missing = sorted(asked - set(stripped))
            raise DataError(f"{path}: no column {missing[0]!r} (header: {', '.join(stripped)}); name the text "
                            "column, or give column_names for a file without a header")
    for c in wanted + ([label_column] if label_column else []):
        if c not in header:
            raise DataError(f"{path}: no column {c!r} (columns: {', '.join(header)})")
    idx = [header.index(c) for c in wanted]
    lab = header.index(label_column) if label_column else None

    def row(line: int, fields: List[str]):
        loc = f"{path} line {line}"

        def make():
            if len(fields) != len(header):
                raise DataError(f"{loc}: {len(fields)} fields, expected {len(header)} ({', '.join(header)})")
            text = _join([fields[i] for i in idx], loc, wanted)
            return text, (_label(fields[lab], loc, label_column) if lab is not None else None)
        return loc, None, make  # a file's records are named by line; their labels come with them

    records = _collect((row(line, fields) for line, fields in rows), policy, lab is not None)
    if not records.texts:
        raise DataError(f"{path}: no records after the header")
    return records


def _chain(first: list, rest: Any):
    yield from first
    yield from rest


def _lines(path: Path, content: str, label_column: Optional[str], dropped: Set[int] = frozenset(),
           policy: Optional[BadRecordPolicy] = None) -> TextRecords:
    if label_column:
        raise DataError(f"{path}: a plain text file (one text per line) has no label column {label_column!r}")
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline

    def row(i: int, line: str):
        loc = f"{path} line {i}"
        return loc, None, lambda: (_check_text(line.rstrip("\r"), loc, "text"), None)

    # lines already counted as not UTF-8 are not counted again as empty
    return _collect((row(i, line) for i, line in enumerate(lines, start=1) if i not in dropped), policy, False)


# ---------------------------------------------------------------------------- any source
def read_texts(data: Any, column: Columns = None, label_column: Optional[str] = None,
               column_names: Optional[Sequence[str]] = None, policy: Optional[BadRecordPolicy] = None) -> TextRecords:
    """Texts (and labels when ``label_column`` is given) from any supported source; bad records
    stop or are skipped according to ``policy`` (default: stop)."""
    if isinstance(data, (str, os.PathLike)):
        p = Path(data).expanduser()
        if not p.exists():
            raise DataError(f"{data}: no such file")
        if p.is_dir():
            from multissl.io import _is_hf_saved

            if _is_hf_saved(p):
                import datasets

                try:
                    return from_dataset(datasets.load_from_disk(str(p)), column, label_column, policy)
                except DataError:
                    raise
                except Exception as e:
                    raise DataError(f"{data}: cannot load the saved dataset ({e})") from None
            raise DataError(f"{data}: is a folder; pass a CSV, TSV or text file, or a saved datasets folder")
        if p.suffix.lower() in (".parquet", ".arrow"):
            from multissl.io import load_data

            return from_dataset(load_data(str(p)), column, label_column, policy)
        return from_file(p, column, label_column, column_names, policy)
    module = type(data).__module__.split(".")[0]
    if module == "datasets":
        return from_dataset(data, column, label_column, policy)
    if module == "pandas":
        return from_dataframe(data, column, label_column, policy)
    if isinstance(data, bytes):
        raise DataError("got bytes; pass str texts (decode them as UTF-8 first) or a file path")
    try:
        import numpy as np

        if isinstance(data, np.ndarray):
            data = data.tolist()
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    if isinstance(data, (list, tuple)):
        if label_column is not None:
            raise DataError("a list of strings has no label column; pass labels separately")
        return from_strings(data, policy=policy)
    raise DataError(f"unsupported text data of type {type(data).__name__}; pass a list of strings, a CSV/TSV/text "
                    "file or a datasets.Dataset")


__all__ = ["TextRecords", "read_texts", "from_file", "from_strings", "from_dataset", "DEFAULT_TEXT_COLUMN",
           "LABEL_TEXT_COLUMNS"]
