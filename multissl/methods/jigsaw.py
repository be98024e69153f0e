"""Jigsaw puzzles: recognise which permutation shuffled the 3x3 tiles of an image.

Reference: M. Noroozi, P. Favaro, "Unsupervised Learning of Visual Representations by Solving
Jigsaw Puzzles", ECCV 2016, https://arxiv.org/abs/1603.09246.

Putting tiles back in place requires knowing what object parts look like and how they are
arranged. As in the paper's context-free network (CFN):

- each image is cut into a 3x3 grid of cells and one tile is cropped at a random position inside
  each cell, so neighbouring tiles are separated by a random gap: continuing edges and lines
  across tile borders is no longer a shortcut;
- every tile is standardised on its own (mean 0, std 1 per channel), and colour images are
  turned to grayscale with some probability and have their colour channels shifted by a pixel or
  two, against shortcuts through low-level statistics and chromatic aberration;
- the tiles are shuffled by one of ``num_permutations`` permutations, chosen once from all 9!
  so that they differ pairwise in as many positions as possible (:func:`maximal_hamming_permutations`):
  the task is then neither ambiguous nor solvable by looking at one or two tiles;
- one encoder (the one kept afterwards) embeds every tile; a head concatenates the nine
  embeddings in shuffled order and classifies the permutation.

The encoder sees tiles during pretraining and whole images afterwards; any encoder that pools
over space (the ResNets, ``small_cnn``) accepts both. Set ``tile_size`` to resize tiles for an
encoder that needs a fixed input size, or to show it tiles at a scale closer to whole images.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from multissl.errors import ConfigError
from multissl.heads import MLPHead
from multissl.methods.pretext import PretextMethod, classification_outputs
from multissl.methods.siamese import UNIT_INTERVAL
from multissl.methods.random_stream import init_random_stream, next_generator

#: smallest tile side in pixels: below it a tile holds hardly any structure to recognise
MIN_TILE = 3
#: largest number of tiles whose permutations are enumerated (10! = 3.6 M rows of 10 bytes)
MAX_TILES = 10
# luma weights (ITU-R BT.601) for the grayscale tiles
_LUMA = (0.299, 0.587, 0.114)


@functools.lru_cache(maxsize=4)
def _all_permutations(num_tiles: int) -> np.ndarray:
    """Every permutation of ``range(num_tiles)`` in lexicographic order, (num_tiles!, num_tiles) int8."""
    perms = np.array(list(itertools.permutations(range(num_tiles))), dtype=np.int8)
    perms.setflags(write=False)
    return perms


@functools.lru_cache(maxsize=16)
def _greedy_max_min(num_permutations: int, num_tiles: int, seed: int) -> np.ndarray:
    candidates = _all_permutations(num_tiles)[np.random.default_rng(seed).permutation(math.factorial(num_tiles))]
    chosen = [0]
    # distance of every candidate to its nearest chosen permutation (0 for the chosen ones)
    nearest = (candidates != candidates[0]).sum(axis=1)
    for _ in range(num_permutations - 1):
        j = int(np.argmax(nearest))  # the first maximum in the seeded candidate order
        chosen.append(j)
        np.minimum(nearest, (candidates != candidates[j]).sum(axis=1), out=nearest)
    out = candidates[chosen].astype(np.int64)
    out.setflags(write=False)
    return out


def maximal_hamming_permutations(num_permutations: int, num_tiles: int = 9, seed: int = 0) -> torch.Tensor:
    """``num_permutations`` permutations of ``num_tiles`` tiles, pairwise far apart in Hamming
    distance (the number of positions where two permutations differ), as a (P, num_tiles) long tensor.

    Greedy max-min selection over all ``num_tiles!`` permutations (farthest-point sampling): start
    from a random permutation, then repeatedly add the permutation whose distance to its nearest
    already chosen one is largest. Each addition is thus the best possible given the earlier ones,
    and the set's minimum pairwise distance is at least half of the best achievable by any set of
    that size (the farthest-point argument; Ravi, Rosenkrantz & Tayi 1994). The paper's Algorithm 1 maximises the *sum* of distances instead,
    which can leave two permutations close together; the minimum is what makes classes
    distinguishable. ``seed`` picks the first permutation and breaks ties (candidates are
    visited in a seeded random order): the same arguments always give the same set.

    Example::

        >>> perms = maximal_hamming_permutations(100)      # (100, 9), deterministic
        >>> min_hamming_distance(perms)
    """
    if isinstance(num_tiles, bool) or not isinstance(num_tiles, int) or not 2 <= num_tiles <= MAX_TILES:
        raise ConfigError(f"num_tiles must be an integer in [2, {MAX_TILES}], got {num_tiles!r}")
    total = math.factorial(num_tiles)
    if isinstance(num_permutations, bool) or not isinstance(num_permutations, int) or not 2 <= num_permutations <= total:
        raise ConfigError(f"num_permutations must be an integer in [2, {num_tiles}! = {total}] for {num_tiles} tiles, "
                          f"got {num_permutations!r}")
    return torch.from_numpy(_greedy_max_min(num_permutations, num_tiles, int(seed)).copy())


def min_hamming_distance(perms: torch.Tensor) -> int:
    """The smallest Hamming distance between two rows of ``perms`` (P, T)."""
    if perms.ndim != 2 or perms.shape[0] < 2:
        raise ValueError(f"need at least two permutations (P, T), got shape {tuple(perms.shape)}")
    d = (perms[:, None, :] != perms[None, :, :]).sum(dim=-1)
    d.fill_diagonal_(perms.shape[1] + 1)
    return int(d.min())


def tile_geometry(height: int, width: int, grid: int, tile_gap: float) -> Tuple[int, int]:
    """``(cell, tile)``: side of a grid cell and of the tile cropped from it, in pixels.

    The grid is square, ``grid * cell`` pixels with ``cell = min(height, width) // grid``
    (placed at a random position in non-square images); tiles are ``floor(cell * (1 - tile_gap))``
    pixels, leaving a random gap of up to ``2 * (cell - tile)`` between neighbours. Raises
    :class:`ConfigError` when tiles would be smaller than ``MIN_TILE`` pixels.
    """
    cell = min(height, width) // grid
    tile = int(cell * (1.0 - tile_gap))
    if tile < MIN_TILE:
        need = grid * MIN_TILE
        while int((need // grid) * (1.0 - tile_gap)) < MIN_TILE:
            need += grid
        raise ConfigError(f"jigsaw: {height}x{width} images are too small for a {grid}x{grid} grid of tiles "
                          f"({tile} px per tile with tile_gap={tile_gap}); need images of at least {need}x{need} "
                          "(set the image adapter's image_size), grid=2 or a smaller tile_gap")
    return cell, tile


def extract_tiles(x: torch.Tensor, corners: torch.Tensor, tile: int) -> torch.Tensor:
    """Square tiles of ``tile`` pixels from images ``x`` (B, C, H, W) at ``corners``.

    ``corners`` (B, T, C, 2) holds the top-left (row, column) of tile t in channel c of image b
    (channels may be cropped at slightly different places); all crops must lie inside the image.
    Returns (B, T, C, tile, tile), gathered in one indexing operation on ``x``'s device.
    """
    b, c = x.shape[:2]
    offsets = torch.arange(tile, device=x.device)
    rows = (corners[..., 0, None] + offsets)[..., :, None]  # (B, T, C, tile, 1)
    cols = (corners[..., 1, None] + offsets)[..., None, :]  # (B, T, C, 1, tile)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, 1, c, 1, 1)
    return x[bi, ci, rows, cols]


def assemble_tiles(tiles: torch.Tensor, grid: int, gap: int = 0, fill: float = 0.0) -> torch.Tensor:
    """Tiles (B, grid*grid, C, s, s) laid out row by row into images (B, C, S, S) with
    ``S = grid * s + (grid - 1) * gap`` and ``fill`` between them (inverse of a gap-free tiling)."""
    b, t, c, s = tiles.shape[:4]
    if t != grid * grid:
        raise ValueError(f"{t} tiles do not fill a {grid}x{grid} grid")
    side = grid * s + (grid - 1) * gap
    out = tiles.new_full((b, c, side, side), fill)
    for i in range(t):
        r, q = divmod(i, grid)
        out[:, :, r * (s + gap): r * (s + gap) + s, q * (s + gap): q * (s + gap) + s] = tiles[:, i]
    return out


class JigsawHead(nn.Module):
    """The CFN's layers above the shared tile encoder: a per-tile fully connected layer (fc6,
    shared by the tiles), the tile features concatenated in shuffled order, then fc7 and the
    permutation classifier fc8. Widths are scaled down from the paper's 512 / 4096."""

    def __init__(self, embed_dim: int, num_tiles: int, tile_dim: int, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.tile_fc = MLPHead([embed_dim, tile_dim], last_batch_norm=True)
        self.classifier = MLPHead([num_tiles * tile_dim, hidden_dim, num_classes])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Tile embeddings (B, T, D) in shuffled order -> permutation logits (B, P)."""
        b, t, d = h.shape
        z = F.relu(self.tile_fc(h.reshape(b * t, d)))
        return self.classifier(z.reshape(b, -1))


class Jigsaw(PretextMethod):
    """Shared tile encoder + :class:`JigsawHead` classifying the permutation; cross-entropy.

    Each step runs the encoder on ``grid**2`` tiles per image. Returns ``{"loss", "accuracy"}``.
    The permutation, the tile positions, grayscale and channel shifts are drawn from a random
    stream derived from the method's seed (drawn from torch's RNG at construction, i.e. from
    ``pretrain(seed=...)``), a step counter and the process rank; both are buffers, so
    checkpoints resume the stream exactly. ``forward(views, generator=g)`` uses ``g`` instead;
    in eval mode the stream is fixed (the same batch gives the same puzzles).

    Example::

        >>> method = Jigsaw(encoder, embed_dim=256, num_permutations=100)
        >>> out = method([images])          # images: float (B, C, H, W), H, W >= 12 for 3x3 tiles
        >>> out["loss"].backward(); out["accuracy"]
    """

    name = "jigsaw"
    hparam_defaults = {
        "grid": 3,
        "num_permutations": 100,
        "tile_gap": 0.15,  # the paper's 64-px tiles in 75-px cells
        "tile_size": None,  # None: tiles go to the encoder at their native size
        "normalize_tiles": True,
        "gray_prob": 0.3,
        "channel_jitter": 0.03,  # max colour-channel shift, fraction of the tile (paper: 0-2 px of 64)
        "tile_dim": 256,
        "hidden_dim": 512,
    }
    hparam_rules = {
        "grid": ("2 or 3", lambda v: v in (2, 3)),
        "num_permutations": (">= 2", lambda v: v >= 2),
        "tile_gap": ("in [0, 0.5]", lambda v: v <= 0.5),
        "gray_prob": UNIT_INTERVAL,
        "channel_jitter": ("in [0, 0.25]", lambda v: v <= 0.25),
    }

    def __init__(self, encoder: nn.Module, embed_dim: int, **hparams: Any) -> None:
        super().__init__(encoder, embed_dim, **hparams)
        hp = self._hparams
        num_tiles = hp["grid"] ** 2
        if hp["num_permutations"] > math.factorial(num_tiles):
            raise ConfigError(f"method 'jigsaw': num_permutations={hp['num_permutations']} exceeds the "
                              f"{math.factorial(num_tiles)} permutations of a {hp['grid']}x{hp['grid']} grid")
        # derived from the hyperparameters, so not saved with the weights
        self.register_buffer("permutations", maximal_hamming_permutations(hp["num_permutations"], num_tiles),
                             persistent=False)
        init_random_stream(self)
        self.head = JigsawHead(self.embed_dim, num_tiles, hp["tile_dim"], hp["hidden_dim"], hp["num_permutations"])

    # ---- puzzles ----------------------------------------------------------------------------
    def make_puzzles(self, x: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """Shuffled, preprocessed tiles (B, T, C, s, s) ready for the encoder, and their
        permutation labels (B,): position j of image b holds its original tile
        ``permutations[labels[b], j]`` (tiles numbered row by row)."""
        if x.ndim != 4:
            raise ValueError(f"jigsaw needs images (B, C, H, W), got shape {tuple(x.shape)}")
        hp = self._hparams
        grid, num_tiles = hp["grid"], hp["grid"] ** 2
        b, c, height, width = x.shape
        cell, tile = tile_geometry(height, width, grid, hp["tile_gap"])
        dev = x.device

        def randint(high: int, *size: int) -> torch.Tensor:  # uniform in [0, high]
            return torch.randint(0, high + 1, size, generator=generator, device=dev)

        labels = randint(hp["num_permutations"] - 1, b)
        # top-left corner of every tile: random grid position + cell position + random gap
        origin = torch.stack([randint(height - grid * cell, b), randint(width - grid * cell, b)], dim=-1)
        cells = torch.arange(num_tiles, device=dev)
        cell_pos = torch.stack([cells // grid, cells % grid], dim=-1) * cell
        corners = origin[:, None] + cell_pos[None] + randint(cell - tile, b, num_tiles, 2)
        corners = corners[:, :, None].expand(b, num_tiles, c, 2)
        shift = round(hp["channel_jitter"] * tile)
        if c > 1 and shift > 0:
            corners = corners + randint(2 * shift, b, num_tiles, c, 2) - shift
            limit = torch.tensor([height - tile, width - tile], device=dev)
            corners = torch.minimum(corners.clamp(min=0), limit)
        tiles = extract_tiles(x, corners, tile)

        if c == 3 and hp["gray_prob"] > 0:
            gray = torch.rand(b, generator=generator, device=dev) < hp["gray_prob"]
            luma = (tiles * tiles.new_tensor(_LUMA).view(1, 1, 3, 1, 1)).sum(dim=2, keepdim=True)
            tiles = torch.where(gray.view(b, 1, 1, 1, 1), luma.expand_as(tiles), tiles)
        if hp["normalize_tiles"]:
            mean = tiles.mean(dim=(-2, -1), keepdim=True)
            std = tiles.std(dim=(-2, -1), keepdim=True)
            tiles = (tiles - mean) / (std + 1e-2)  # the eps keeps flat tiles flat instead of amplifying noise
        order = self.permutations[labels]  # (B, T)
        tiles = tiles[torch.arange(b, device=dev)[:, None], order]
        size = hp["tile_size"]
        if size is not None and size != tile:
            flat = F.interpolate(tiles.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=size < tile)
            tiles = flat.view(b, num_tiles, c, size, size)
        return tiles, labels

    def forward(self, views: List[Any], generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        x = self.single_view(views)
        tiles, labels = self.make_puzzles(x, generator if generator is not None else next_generator(self, x.device))
        b, t = tiles.shape[:2]
        h = self.encode(tiles.flatten(0, 1))
        return classification_outputs(self.head(h.view(b, t, -1)), labels)


__all__ = ["Jigsaw", "JigsawHead", "assemble_tiles", "extract_tiles", "maximal_hamming_permutations",
           "min_hamming_distance", "tile_geometry", "MIN_TILE"]
