"""Reading videos for the video adapter: encoded files decoded with PyAV, and ``.npy`` arrays.

PyAV (``av``, FFmpeg bindings shipped as self-contained wheels) is the decoder: torchvision 0.26
no longer has ``torchvision.io.read_video``, and torchcodec needs an FFmpeg install on the
system. PyAV is imported lazily, so the rest of multissl works without it.

Every failure (missing file, not a video, truncated stream, no frames) is a
:class:`~multissl.errors.DataError` naming the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Union

import numpy as np

from multissl.errors import DataError

#: file extensions read from folders (case-insensitive)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


def is_video_file(path: Union[str, Path]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_video_files(folder: Union[str, Path]) -> List[Path]:
    """Video files under ``folder`` (recursively), sorted by path; DataError when there are none."""
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_video_file(p) and not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder")
    return files


def read_video_file(path: Union[str, Path]) -> np.ndarray:
    """Every frame of the first video stream of ``path`` as uint8 (T, H, W, C), C = 3 (RGB)
    or 1 for gray formats.

    Decoding errors anywhere in the stream are errors: a truncated file must not silently
    become a shorter clip.
    """
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency; a broken install still gets a clear message
        raise DataError(f"{path}: reading video files needs PyAV (pip install av)") from None
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file")
    frames = []
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            gray = stream.format is not None and stream.format.name in ("gray", "gray8", "gray16le", "gray16be")
            for frame in container.decode(stream):
                if gray:
                    frames.append(frame.to_ndarray(format="gray")[:, :, None])
                else:
                    frames.append(frame.to_ndarray(format="rgb24"))
    except DataError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot decode the video ({type(e).__name__}: {e})") from None
    if not frames:
        raise DataError(f"{path}: the video has zero frames")
    return np.stack(frames).astype(np.uint8, copy=False)


def read_npy(path: Union[str, Path]) -> np.ndarray:
    """An array of clips saved with ``numpy.save`` (loaded fully; no pickles)."""
    try:
        return np.load(str(path), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read the .npy file ({e})") from None


__all__ = ["VIDEO_EXTENSIONS", "is_video_file", "list_video_files", "read_video_file", "read_npy"]
