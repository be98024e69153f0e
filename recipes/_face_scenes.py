"""Face scenes for the ``face_detection`` recipe: AT&T/ORL faces pasted onto backgrounds, boxes known.

Not a recipe itself (the leading underscore keeps it out of ``multissl recipes``).

- :func:`load_orl_faces` reads the ``s<N>/<K>.pgm`` folders of the AT&T "Database of Faces"
  (40 people x 10 greyscale 92x112 images) into a uint8 array and the person of each image.
- :func:`load_backgrounds` reads a folder of natural images (e.g. CIFAR-10 JPEGs) as greyscale.
- :func:`compose_scenes` pastes 1-``max_faces`` faces per scene at random positions and
  scales, with brightness/contrast changes and soft (feathered) edges, onto an upscaled natural
  image blended with a procedural texture, plus mild sensor noise. Every box is the exact
  rectangle a face was pasted into, and two faces overlap by at most ``max_iou``.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``: the same
arguments give the same scenes, bit for bit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from multissl.errors import ConfigError, DataError
from multissl.evaluation.detection_ap import box_iou_matrix

#: the ORL image size (width, height)
ORL_SIZE = (92, 112)
_BACKGROUND_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp")


@dataclass
class FaceSet:
    """Face images (N, 112, 92) uint8 and the person (subject folder number) of each."""

    images: np.ndarray
    people: np.ndarray
    files: List[str]


@dataclass
class FaceScenes:
    """Scenes (N, 1, S, S) uint8; per scene the boxes (k, 4) float32 ``x1, y1, x2, y2`` in
    pixels (x2/y2 exclusive: a face pasted at columns x1..x2-1), the person of each box and
    the index of the pasted face image in the :class:`FaceSet`."""

    images: np.ndarray
    boxes: List[np.ndarray]
    people: List[np.ndarray]
    face_index: List[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


def load_orl_faces(root: str) -> FaceSet:
    """Every ``s<N>/*.pgm`` under ``root`` (sorted by person, then image number), decoded with PIL.

    Raises :class:`DataError` naming the folder or file when it is missing, holds no PGM files,
    or a file cannot be decoded as a greyscale image.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{root}: no such folder (expected the AT&T/ORL faces: s1/1.pgm ... s40/10.pgm)")
    files = sorted(folder.glob("s*/*.pgm"), key=_orl_sort_key)
    files = [f for f in files if re.fullmatch(r"s\d+", f.parent.name)]
    if not files:
        raise DataError(f"{root}: no PGM files in s<N>/ sub-folders (expected the AT&T/ORL faces: s1/1.pgm ...)")
    images, people = [], []
    size = None
    for f in files:
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("L"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{f}: cannot decode PGM image ({e})") from None
        if size is None:
            size = arr.shape
        elif arr.shape != size:
            raise DataError(f"{f}: size {arr.shape[1]}x{arr.shape[0]} differs from the first face's {size[1]}x{size[0]}")
        images.append(arr)
        people.append(int(f.parent.name[1:]))
    return FaceSet(np.stack(images), np.asarray(people, dtype=np.int64), [str(f) for f in files])


def _orl_sort_key(path: Path) -> Tuple[int, int, str]:
    person = int(path.parent.name[1:]) if re.fullmatch(r"s\d+", path.parent.name) else -1
    number = int(path.stem) if path.stem.isdigit() else -1
    return person, number, path.name


def load_backgrounds(root: str, limit: Optional[int] = None) -> np.ndarray:
    """Images under ``root`` (recursive, sorted by path) as greyscale uint8 (N, h, w); all must share one size."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"{root}: no such background folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _BACKGROUND_EXTENSIONS)
    if not files:
        raise DataError(f"{root}: no image files for backgrounds")
    if limit:
        files = files[:limit]
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                out.append(np.asarray(im.convert("L"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DataError(f"{f}: cannot decode background image ({e})") from None
        if out[-1].shape != out[0].shape:
            raise DataError(f"{f}: size {out[-1].shape} differs from the first background's {out[0].shape}")
    return np.stack(out)


def procedural_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Value noise over three octaves plus a random oriented stripe pattern, float in [0, 255]."""
    from PIL import Image

    tex = np.zeros((size, size))
    for cells, weight in ((4, 0.5), (12, 0.3), (32, 0.2)):
        grid = rng.random((cells, cells)).astype(np.float32)
        up = np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC))
        tex += weight * up
    yy, xx = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 40)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    mix = rng.uniform(0.0, 0.4)
    tex = (1 - mix) * tex + mix * stripes
    lo, hi = rng.uniform(0, 90), rng.uniform(160, 255)
    tex = (tex - tex.min()) / max(tex.max() - tex.min(), 1e-6)
    return lo + (hi - lo) * tex


def _background(rng: np.random.Generator, size: int, naturals: Optional[np.ndarray], natural_prob: float,
                texture_mix: Tuple[float, float]) -> np.ndarray:
    from PIL import Image

    texture = procedural_texture(rng, size)
    if naturals is None or len(naturals) == 0 or rng.random() >= natural_prob:
        return texture
    img = naturals[rng.integers(len(naturals))]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    natural = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.BICUBIC), dtype=np.float64)
    # mostly the photo; the texture adds the fine detail an upscaled 32 px photo lacks
    mix = rng.uniform(*texture_mix)
    return (1 - mix) * natural + mix * texture


def _feather_mask(h: int, w: int, feather: float) -> np.ndarray:
    """Alpha (h, w) in (0, 1]: 1 inside, a linear ramp over ``feather`` pixels at every edge."""
    if feather <= 0:
        return np.ones((h, w))
    ys = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5)
    xs = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5)
    return np.clip(np.minimum(ys[:, None], xs[None, :]) / feather, 0.0, 1.0)


def compose_scenes(
    faces: FaceSet,
    people: Sequence[int],
    num_scenes: int,
    seed: int,
    size: int = 128,
    backgrounds: Optional[np.ndarray] = None,
    natural_prob: float = 0.8,
    texture_mix: Tuple[float, float] = (0.1, 0.4),
    max_faces: int = 4,
    face_height: Tuple[int, int] = (24, 56),
    max_iou: float = 0.05,
    brightness: float = 25.0,
    contrast: Tuple[float, float] = (0.7, 1.3),
    feather: Tuple[float, float] = (0.0, 0.15),
    noise_std: float = 4.0,
) -> FaceScenes:
    """``num_scenes`` greyscale scenes of ``size`` px with 1..``max_faces`` faces of ``people``.

    Each face is resized (aspect kept) to a height drawn from ``face_height``, its pixels
    changed by a random contrast factor and brightness offset (``+-brightness`` grey levels),
    and blended in with edges feathered over a random share (``feather``) of its shorter side.
    Positions are redrawn until a face overlaps no earlier one by more than ``max_iou``
    (a scene keeps fewer faces if none fits after 50 tries). ``backgrounds``: natural images
    (N, h, w), upscaled and blended with a procedural texture (its share drawn from ``texture_mix``),
    used with probability ``natural_prob``; otherwise the texture alone.
    """
    from PIL import Image

    lo, hi = face_height
    aspect = ORL_SIZE[0] / ORL_SIZE[1]
    if num_scenes < 0 or max_faces < 1:
        raise ConfigError(f"need num_scenes >= 0 and max_faces >= 1, got {num_scenes}, {max_faces}")
    if not 4 <= lo <= hi <= size:
        raise ConfigError(f"face heights {face_height} must satisfy 4 <= min <= max <= scene size {size}")
    pool = np.flatnonzero(np.isin(faces.people, np.asarray(list(people))))
    if len(pool) == 0:
        raise DataError(f"no face images of people {sorted(people)}")
    rng = np.random.default_rng(seed)
    images = np.empty((num_scenes, 1, size, size), dtype=np.uint8)
    all_boxes, all_people, all_index = [], [], []
    for s in range(num_scenes):
        canvas = _background(rng, size, backgrounds, natural_prob, texture_mix)
        boxes: List[List[float]] = []
        index: List[int] = []
        for _ in range(int(rng.integers(1, max_faces + 1))):
            for _attempt in range(50):
                h = int(rng.integers(lo, hi + 1))
                w = max(1, int(round(h * aspect)))
                x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
                box = [x, y, x + w, y + h]
                if not boxes or box_iou_matrix(np.asarray([box]), np.asarray(boxes)).max() <= max_iou:
                    break
            else:
                continue
            k = int(pool[rng.integers(len(pool))])
            face = np.asarray(Image.fromarray(faces.images[k]).resize((w, h), Image.BILINEAR), dtype=np.float64)
            c = rng.uniform(*contrast)
            face = np.clip((face - face.mean()) * c + face.mean() + rng.uniform(-brightness, brightness), 0, 255)
            alpha = _feather_mask(h, w, rng.uniform(*feather) * min(h, w))
            region = canvas[y:y + h, x:x + w]
            canvas[y:y + h, x:x + w] = alpha * face + (1 - alpha) * region
            boxes.append([float(v) for v in box])
            index.append(k)
        if noise_std > 0:
            canvas = canvas + rng.normal(0.0, noise_std, canvas.shape)
        images[s, 0] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
        all_boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        idx = np.asarray(index, dtype=np.int64)
        all_index.append(idx)
        all_people.append(faces.people[idx])
    return FaceScenes(images, all_boxes, all_people, all_index)


def random_crops(scenes: np.ndarray, crop: int, per_scene: int, seed: int) -> np.ndarray:
    """``per_scene`` random ``crop`` x ``crop`` windows of every scene (N, C, S, S), uint8 (N * per_scene, C, crop, crop)."""
    n, _, s, _ = scenes.shape
    if not 0 < crop <= s:
        raise ConfigError(f"crop size {crop} must be in 1..{s}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        for _ in range(per_scene):
            y, x = rng.integers(0, s - crop + 1, size=2)
            out.append(scenes[i, :, y:y + crop, x:x + crop])
    return np.stack(out)


__all__ = ["FaceSet", "FaceScenes", "load_orl_faces", "load_backgrounds", "compose_scenes", "random_crops",
           "procedural_texture", "ORL_SIZE"]
