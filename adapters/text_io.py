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
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

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
def from_strings(data: Sequence[Any], label_data: Optional[Sequence[Any]] = None) -> TextRecords:
    if len(data) == 0:
        raise DataError("no texts: the list is empty")
    texts = [_check_text(t, f"record {i}", "text") for i, t in enumerate(data)]
    labels = None
    if label_data is not None:
        if len(label_data) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(label_data)} labels")
        labels = [_label(v, f"record {i}", "label") for i, v in enumerate(label_data)]
    return TextRecords(texts, labels, [f"record {i}" for i in range(len(texts))])


def from_dataset(ds: Any, column: Columns = None, label_column: Optional[str] = None) -> TextRecords:
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
    texts = [_join(parts, f"record {i}", names) for i, parts in enumerate(zip(*cols))]
    labels = None
    if label_column:
        feat = ds.features[label_column]
        raw = ds[label_column]
        class_names = getattr(feat, "names", None)
        labels = [_label(class_names[v] if class_names and isinstance(v, int) else v, f"record {i}", label_column)
                  for i, v in enumerate(raw)]
    return TextRecords(texts, labels, [f"record {i}" for i in range(len(texts))])


def from_dataframe(df: Any, column: Columns = None, label_column: Optional[str] = None) -> TextRecords:
    import datasets

    return from_dataset(datasets.Dataset.from_pandas(df, preserve_index=False), column, label_column)


# ---------------------------------------------------------------------------- files
def _decode(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "convert the file to UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text


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
              column_names: Optional[Sequence[str]] = None) -> TextRecords:
    """Texts (and labels) of one file; see the module docstring for the layouts."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a CSV, TSV or text file")
    content = _decode(path)
    suffix = path.suffix.lower()
    first_line = content.lstrip("\ufeff").split("\n", 1)[0]
    if suffix == ".csv":
        delimiter = ","
    elif suffix in (".tsv", ".tab") or "\t" in first_line:
        delimiter = "\t"
    elif suffix in (".txt", "") and column_names is None:
        return _lines(path, content, label_column)
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
    texts, labels, where = [], [], []
    for line, fields in rows:
        loc = f"{path} line {line}"
        if len(fields) != len(header):
            raise DataError(f"{loc}: {len(fields)} fields, expected {len(header)} ({', '.join(header)})")
        texts.append(_join([fields[i] for i in idx], loc, wanted))
        if lab is not None:
            labels.append(_label(fields[lab], loc, label_column))
        where.append(loc)
    if not texts:
        raise DataError(f"{path}: no records after the header")
    return TextRecords(texts, labels if lab is not None else None, where)


def _chain(first: list, rest: Any):
    yield from first
    yield from rest


def _lines(path: Path, content: str, label_column: Optional[str]) -> TextRecords:
    if label_column:
        raise DataError(f"{path}: a plain text file (one text per line) has no label column {label_column!r}")
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    texts, where = [], []
    for i, line in enumerate(lines, start=1):
        loc = f"{path} line {i}"
        texts.append(_check_text(line.rstrip("\r"), loc, "text"))
        where.append(loc)
    return TextRecords(texts, None, where)


# ---------------------------------------------------------------------------- any source
def read_texts(data: Any, column: Columns = None, label_column: Optional[str] = None,
               column_names: Optional[Sequence[str]] = None) -> TextRecords:
    """Texts (and labels when ``label_column`` is given) from any supported source."""
    if isinstance(data, (str, os.PathLike)):
        p = Path(data).expanduser()
        if not p.exists():
            raise DataError(f"{data}: no such file")
        if p.is_dir():
            from multissl.io import _is_hf_saved

            if _is_hf_saved(p):
                import datasets

                try:
                    return from_dataset(datasets.load_from_disk(str(p)), column, label_column)
                except DataError:
                    raise
                except Exception as e:
                    raise DataError(f"{data}: cannot load the saved dataset ({e})") from None
            raise DataError(f"{data}: is a folder; pass a CSV, TSV or text file, or a saved datasets folder")
        if p.suffix.lower() in (".parquet", ".arrow"):
            from multissl.io import load_data

            return from_dataset(load_data(str(p)), column, label_column)
        return from_file(p, column, label_column, column_names)
    module = type(data).__module__.split(".")[0]
    if module == "datasets":
        return from_dataset(data, column, label_column)
    if module == "pandas":
        return from_dataframe(data, column, label_column)
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
        return from_strings(data)
    raise DataError(f"unsupported text data of type {type(data).__name__}; pass a list of strings, a CSV/TSV/text "
                    "file or a datasets.Dataset")


__all__ = ["TextRecords", "read_texts", "from_file", "from_strings", "from_dataset", "DEFAULT_TEXT_COLUMN",
           "LABEL_TEXT_COLUMNS"]
