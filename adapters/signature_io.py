"""Reading online signatures: the SVC2004 text format, folders and globs of such files.

SVC2004 (Yeung et al., "SVC2004: First International Signature Verification Competition",
ICBA 2004, LNCS 3072) stores one signature per text file::

    84                                              <- line 1: number of points N
    2933 5678 31275775 0 1550 710 439               <- N lines of samples
    ...

Task 2 files have seven integer columns ``x y timestamp button azimuth altitude pressure``;
Task 1 files have the first four. ``button`` is 0 for the first sample of each stroke (the
pen was lifted before it: the tablet does not sample in the air), 1 otherwise.

Every problem is a :class:`~multissl.errors.DataError` that names the file and the line, so
a user can open the file at that line and see what is wrong.
"""
from __future__ import annotations

import glob
import math
import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from multissl.errors import DataError

#: column names of the SVC2004 Task 2 (7 values) and Task 1 (4 values) formats
SVC2004_COLUMNS: Tuple[str, ...] = ("x", "y", "time", "pen_down", "azimuth", "altitude", "pressure")
SVC2004_TASK1_COLUMNS: Tuple[str, ...] = SVC2004_COLUMNS[:4]

#: file extensions read from a folder (case-insensitive)
SIGNATURE_EXTENSIONS: Tuple[str, ...] = (".txt",)

_SVC_NAME = re.compile(r"^U(\d+)S(\d+)$", re.IGNORECASE)

PathLike = Union[str, "os.PathLike[str]"]


def read_svc2004(path: PathLike) -> np.ndarray:
    """One SVC2004 signature file -> float64 array (N, 7) or (N, 4) in file column order.

    Raises :class:`DataError` naming the file and line for: an empty file, a header that is not
    a positive integer, a line whose value count differs from 4 or 7 (or from the first sample
    line), a non-numeric or non-finite value, a header count that does not match the number of
    sample lines, and a signature with fewer than two points. Blank lines are ignored.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a text file (cannot decode as UTF-8)") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read file ({exc.strerror or exc.__class__.__name__})") from None
    # (line number, stripped content) of every non-blank line; line numbers are 1-based
    lines = [(i + 1, s.strip()) for i, s in enumerate(text.splitlines()) if s.strip()]
    if not lines:
        raise DataError(f"{p}: empty file (expected a point count on line 1, then one line per point)")
    header_no, header = lines[0]
    try:
        declared = int(header)
    except ValueError:
        raise DataError(f"{p} line {header_no}: expected the number of points (an integer), got {header[:40]!r}") from None
    if declared < 0:
        raise DataError(f"{p} line {header_no}: the number of points must be >= 0, got {declared}")
    body = lines[1:]
    rows: List[List[float]] = []
    width: Optional[int] = None
    for no, s in body:
        fields = s.split()
        if width is None:
            if len(fields) not in (len(SVC2004_COLUMNS), len(SVC2004_TASK1_COLUMNS)):
                raise DataError(f"{p} line {no}: malformed point line: expected 7 values "
                                f"({' '.join(SVC2004_COLUMNS)}) or 4 (Task 1), got {len(fields)}")
            width = len(fields)
        elif len(fields) != width:
            raise DataError(f"{p} line {no}: malformed point line: expected {width} values like the first "
                            f"point line, got {len(fields)}")
        try:
            row = [float(v) for v in fields]
        except ValueError:
            bad = next(v for v in fields if not _is_number(v))
            raise DataError(f"{p} line {no}: non-numeric value {bad[:40]!r}") from None
        if not all(math.isfinite(v) for v in row):
            raise DataError(f"{p} line {no}: non-finite value (NaN or infinity)")
        rows.append(row)
    if declared != len(rows):
        # name the line where the two disagree: the first missing or the first extra point
        where = body[declared][0] if len(rows) > declared else (body[-1][0] if body else header_no)
        raise DataError(f"{p} line {where}: header (line {header_no}) says {declared} points "
                        f"but the file has {len(rows)} point lines")
    if len(rows) < 2:
        where = body[0][0] if body else header_no
        raise DataError(f"{p} line {where}: a signature needs at least 2 points, got {len(rows)}")
    return np.asarray(rows, dtype=np.float64)


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def natural_key(path: Path) -> Tuple:
    """Sort key that orders ``U2S1`` before ``U10S1`` (digit runs compare as numbers)."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.as_posix()))


def list_signature_files(source: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    """The signature files named by ``source``: a folder (recursive; ``*.txt``, any case;
    hidden entries skipped), a glob pattern, one file, or a list of files. Folders and globs
    are returned in natural order (``U1S2`` < ``U1S10`` < ``U2S1``)."""
    if isinstance(source, (list, tuple)):
        return [Path(s) for s in source]
    text = os.fspath(source)
    if any(ch in text for ch in "*?["):
        files = sorted((Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file()), key=natural_key)
        if not files:
            raise DataError(f"{text}: no files match")
        return files
    path = Path(text)
    if not path.exists():
        raise DataError(f"{text}: no such file or directory")
    if path.is_file():
        return [path]
    files = [f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in SIGNATURE_EXTENSIONS
             and not any(part.startswith(".") for part in f.relative_to(path).parts)]
    if not files:
        raise DataError(f"{text}: no signature files ({', '.join(SIGNATURE_EXTENSIONS)}) in this folder")
    return sorted(files, key=lambda f: natural_key(f.relative_to(path)))


def svc2004_ids(path: PathLike) -> Tuple[int, int]:
    """``(user, signature)`` from an SVC2004 file name ``U<user>S<sig>.TXT``. In the public
    Task 2 set, signatures 1-20 are genuine and 21-40 skilled forgeries of that user."""
    m = _SVC_NAME.match(Path(path).stem)
    if m is None:
        raise DataError(f"{path}: not an SVC2004 file name (expected U<user>S<signature>.TXT)")
    return int(m.group(1)), int(m.group(2))


__all__ = ["SVC2004_COLUMNS", "SVC2004_TASK1_COLUMNS", "SIGNATURE_EXTENSIONS", "read_svc2004",
           "list_signature_files", "svc2004_ids", "natural_key"]
