"""Jigsaw puzzles (CFN): the permutation set, tiling, shortcut defences, training, errors."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from multissl import pretrain
from multissl.errors import ConfigError
from multissl.methods import build_method, get_method_class
from multissl.methods.jigsaw import (Jigsaw, assemble_tiles, extract_tiles, maximal_hamming_permutations,
                                     min_hamming_distance, tile_geometry)

EMBED = 16
# geometry and colour handling switched off: tiles are exact cells of the image
PLAIN = {"tile_gap": 0.0, "normalize_tiles": False, "gray_prob": 0.0, "channel_jitter": 0.0}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def flat_encoder(channels: int, tile: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * tile * tile, 64), nn.ReLU(), nn.Linear(64, EMBED))


def make(channels: int = 1, tile: int = 3, seed: int = 0, **hparams) -> Jigsaw:
    torch.manual_seed(seed)
    hparams = {"tile_dim": 8, "hidden_dim": 32, **hparams}
    return build_method("jigsaw", flat_encoder(channels, hparams.get("tile_size") or tile), EMBED, **hparams)


def numbered(b: int, c: int, h: int, w: int) -> torch.Tensor:
    """Images whose every pixel value is unique: value = ((b * c + c) * h + row) * w + col."""
    return torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w)


# ---- the permutation set -------------------------------------------------------------------
def brute_force_min_distance(perms: np.ndarray) -> int:
    return min(int((p != q).sum()) for p, q in itertools.combinations(perms, 2))


def test_permutation_set_is_deterministic_valid_and_of_the_requested_size() -> None:
    perms = maximal_hamming_permutations(100)
    assert perms.shape == (100, 9) and perms.dtype == torch.long
    assert torch.equal(perms, maximal_hamming_permutations(100, 9, seed=0))
    assert not torch.equal(perms, maximal_hamming_permutations(100, 9, seed=1))
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == 100
    assert min_hamming_distance(perms) == brute_force_min_distance(perms.numpy())
    perms[0, 0] = -1  # callers get a copy: the cached set stays intact
    assert maximal_hamming_permutations(100)[0, 0] >= 0


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_greedy_guarantees_on_four_tiles_against_brute_force(n: int) -> None:
    """On the 24 permutations of 4 tiles: every greedy pick is the farthest remaining permutation,
    and the set's minimum distance is at least half the best over all C(24, n) subsets."""
    perms = maximal_hamming_permutations(n, num_tiles=4, seed=3).numpy()
    everything = np.array(list(itertools.permutations(range(4))))
    for i in range(1, n):
        nearest = np.array([min(int((c != p).sum()) for p in perms[:i]) for c in everything])
        assert min(int((perms[i] != p).sum()) for p in perms[:i]) == nearest.max()
    d = (everything[:, None] != everything[None]).sum(-1)
    subsets = np.array(list(itertools.combinations(range(24), n)))
    pairs = list(itertools.combinations(range(n), 2))
    best = np.stack([d[subsets[:, i], subsets[:, j]] for i, j in pairs]).min(axis=0).max()
    got = brute_force_min_distance(perms)
    assert got == min_hamming_distance(torch.from_numpy(perms))
    assert 2 * got >= best
    if n <= 4:  # four mutually disjoint permutations exist (a Latin square): greedy finds them
        assert got == best == 4


def test_last_pick_of_the_default_size_is_the_farthest_from_the_others() -> None:
    perms = maximal_hamming_permutations(30).numpy()
    everything = np.array(list(itertools.permutations(range(9))), dtype=np.int8)
    nearest = np.full(len(everything), 10)
    for p in perms[:-1]:
        np.minimum(nearest, (everything != p).sum(1), out=nearest)
    assert nearest.max() == min_hamming_distance(torch.from_numpy(perms))


@pytest.mark.parametrize("n, tiles, match", [(25, 4, r"\[2, 4! = 24\]"), (1, 9, "num_permutations"),
                                             (10, 11, "num_tiles")])
def test_permutation_set_errors(n: int, tiles: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        maximal_hamming_permutations(n, tiles)


# ---- tiles -----------------------------------------------------------------------------------
def test_extract_then_assemble_is_the_identity_on_a_gap_free_grid() -> None:
    x = numbered(2, 3, 9, 9)
    cells = torch.tensor([[r * 3, q * 3] for r in range(3) for q in range(3)])
    corners = cells.view(1, 9, 1, 2).expand(2, 9, 3, 2)
    tiles = extract_tiles(x, corners, 3)
    assert tiles.shape == (2, 9, 3, 3, 3)
    assert torch.equal(tiles[1, 5, 2], x[1, 2, 3:6, 6:9])  # tile 5 = row 1, column 2
    assert torch.equal(assemble_tiles(tiles, 3), x)
    spaced = assemble_tiles(tiles, 3, gap=1, fill=-1.0)
    assert spaced.shape == (2, 3, 11, 11) and torch.equal(spaced[:, :, 4:7, 8:11], x[:, :, 3:6, 6:9])
    assert (spaced[:, :, 3] == -1).all()


def test_identity_permutation_puzzles_reassemble_the_image() -> None:
    """Puzzles undone with their label's permutation give back the image, tile for tile."""
    method = make(**PLAIN)
    x = numbered(16, 1, 9, 9)
    tiles, labels = method.make_puzzles(x, torch.Generator().manual_seed(0))
    assert tiles.shape == (16, 9, 1, 3, 3) and labels.shape == (16,)
    assert len(set(labels.tolist())) > 1
    for b in range(16):
        perm = method.permutations[labels[b]]
        if torch.equal(perm, torch.arange(9)):
            assert torch.equal(assemble_tiles(tiles[b:b + 1], 3)[0], x[b])
        restored = torch.empty_like(tiles[b])
        restored[perm] = tiles[b]  # position j holds original tile perm[j]
        assert torch.equal(assemble_tiles(restored[None], 3)[0], x[b])


def test_tiles_lie_inside_their_cells_with_random_gaps() -> None:
    method = make(tile=8, **{**PLAIN, "tile_gap": 0.15})
    x = numbered(32, 1, 30, 30)  # cells of 10 px, tiles of 8 px
    assert tile_geometry(30, 30, 3, 0.15) == (10, 8)
    tiles, labels = method.make_puzzles(x, torch.Generator().manual_seed(0))
    offsets = set()
    for b in range(32):
        for j, cell in enumerate(method.permutations[labels[b]].tolist()):
            top_left = int(tiles[b, j, 0, 0, 0]) - b * 900
            row, col = divmod(top_left, 30)
            assert (row // 10, col // 10) == divmod(cell, 3)
            assert row % 10 <= 2 and col % 10 <= 2
            offsets.add((row % 10, col % 10))
            assert torch.equal(tiles[b, j, 0], x[b, 0, row:row + 8, col:col + 8])
    assert len(offsets) == 9  # every gap size occurs


def test_non_square_images_use_a_square_grid() -> None:
    method = make(**PLAIN)
    tiles, _ = method.make_puzzles(numbered(4, 1, 9, 14), torch.Generator().manual_seed(0))
    assert tiles.shape == (4, 9, 1, 3, 3)


def test_tiles_are_standardised_one_by_one() -> None:
    method = make(tile=8, **{**PLAIN, "normalize_tiles": True})
    tiles, _ = method.make_puzzles(torch.rand(4, 1, 30, 30) * 5 + 3, torch.Generator().manual_seed(0))
    assert torch.allclose(tiles.mean(dim=(-2, -1)), torch.zeros(4, 9, 1), atol=1e-5)
    assert torch.allclose(tiles.std(dim=(-2, -1)), torch.ones(4, 9, 1), atol=0.01)
    flat, _ = method.make_puzzles(torch.full((2, 1, 30, 30), 0.7), torch.Generator().manual_seed(0))
    assert torch.equal(flat, torch.zeros_like(flat))  # flat tiles stay flat, no division by ~0


def test_colour_shortcut_defences() -> None:
    x = torch.rand(64, 1, 30, 30).expand(64, 3, 30, 30) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    gray = make(3, 8, **{**PLAIN, "gray_prob": 1.0})
    tiles, _ = gray.make_puzzles(x, torch.Generator().manual_seed(0))
    assert torch.allclose(tiles[:, :, 0], tiles[:, :, 1]) and torch.allclose(tiles[:, :, 0], tiles[:, :, 2])
    jitter = make(3, 8, **{**PLAIN, "channel_jitter": 0.25})  # up to 2 px per channel
    plain = make(3, 8, **PLAIN)
    g = torch.Generator().manual_seed(0)
    shifted, _ = jitter.make_puzzles(x / x.amax(dim=(2, 3), keepdim=True), g)
    aligned, _ = plain.make_puzzles(x / x.amax(dim=(2, 3), keepdim=True), torch.Generator().manual_seed(0))
    assert torch.allclose(aligned[:, :, 0], aligned[:, :, 2])  # same picture in every channel
    assert not torch.allclose(shifted[:, :, 0], shifted[:, :, 2])  # channels cropped at different places
    half = make(3, 8, **{**PLAIN, "gray_prob": 0.5})
    tiles, _ = half.make_puzzles(x, torch.Generator().manual_seed(0))
    is_gray = torch.isclose(tiles[:, :, 0], tiles[:, :, 2]).flatten(1).all(dim=1)
    assert 10 < int(is_gray.sum()) < 54


def test_tiles_are_resized_to_tile_size() -> None:
    seen = []

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = flat_encoder(1, 12)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(t.shape))
            return self.net(t)

    torch.manual_seed(0)
    method = build_method("jigsaw", Recorder(), EMBED, tile_size=12, tile_dim=8, hidden_dim=16)
    method([torch.rand(2, 1, 30, 30)])
    assert seen == [(18, 1, 12, 12)]


# ---- the method ------------------------------------------------------------------------------
def test_registry_and_recommendations() -> None:
    cls = get_method_class("jigsaw")
    assert cls is Jigsaw and cls.n_views == 1
    assert cls.adapter_defaults == {"image": {"preset": "light"}}
    assert make().permutations.shape == (100, 9)


def test_outputs_and_gradients_reach_every_parameter() -> None:
    method = make(num_permutations=10)
    out = method([torch.rand(6, 1, 12, 12)])  # cells of 4 px, tiles of 3
    assert set(out) == {"loss", "accuracy"}
    assert out["loss"].ndim == 0 and out["loss"].requires_grad and torch.isfinite(out["loss"])
    assert 0.0 <= out["accuracy"].item() <= 1.0 and not out["accuracy"].requires_grad
    out["loss"].backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_overfits_a_tiny_problem() -> None:
    method = make(grid=2, num_permutations=8, tile=3)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = method([x], generator=torch.Generator().manual_seed(0))  # the same 8 puzzles every step
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.1 * losses[0]
    method.eval()
    assert method([x], generator=torch.Generator().manual_seed(0))["accuracy"].item() == 1.0


def test_random_stream_reproduces_resumes_and_is_fixed_in_eval() -> None:
    x = torch.rand(8, 1, 12, 12)
    a, b, c = make(seed=0), make(seed=0), make(seed=1)
    la = [a([x])["loss"] for _ in range(3)]
    lb = [b([x])["loss"] for _ in range(3)]
    assert all(torch.equal(p, q) for p, q in zip(la, lb))
    assert not torch.equal(la[0], c([x])["loss"])
    assert not torch.equal(la[0], la[1])  # every training step draws new puzzles
    assert int(a.rng_step) == 3 and "rng_step" in a.state_dict() and "permutations" not in a.state_dict()
    c.load_state_dict(a.state_dict())  # a checkpoint carries the stream: c continues where a is
    assert torch.equal(a([x])["loss"], c([x])["loss"])
    a.eval()
    with torch.no_grad():
        first, second = a([x]), a([x])
    assert torch.equal(first["loss"], second["loss"]) and int(a.rng_step) == 4


def test_images_too_small_for_the_grid_are_a_clear_error() -> None:
    method = make()
    with pytest.raises(ConfigError, match=r"8x8 images are too small for a 3x3 grid.*at least 12x12.*grid=2"):
        method([torch.rand(2, 1, 8, 8)])
    assert tile_geometry(12, 12, 3, 0.15) == (4, 3)
    assert make(grid=2, num_permutations=24, tile=3)([torch.rand(2, 1, 8, 8)])["loss"].isfinite()


@pytest.mark.parametrize("hparams, match", [
    ({"grid": 4}, "'grid' must be 2 or 3"),
    ({"grid": 2}, "num_permutations=100 exceeds the 24 permutations"),
    ({"num_permutations": 1}, "'num_permutations' must be >= 2"),
    ({"tile_gap": 0.7}, r"'tile_gap' must be in \[0, 0.5\]"),
    ({"gray_prob": 1.5}, r"'gray_prob' must be in \[0, 1\]"),
    ({"tile_size": 0}, "'tile_size' must be >= 1"),
    ({"tile_size": "big"}, "'tile_size' must be an integer"),
    ({"tiles": 9}, "unknown hyperparameter.*valid: channel_jitter"),
])
def test_invalid_hyperparameters(hparams: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_method("jigsaw", flat_encoder(1, 3), EMBED, **hparams)


def test_video_shaped_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"images \(B, C, H, W\)"):
        make()([torch.rand(2, 1, 4, 9, 9)])


def test_pretrain_then_embed_whole_images() -> None:
    """The kept encoder learnt on tiles and embeds whole images afterwards."""
    images = np.random.default_rng(0).integers(0, 255, size=(24, 28, 28), dtype=np.uint8)
    model = pretrain(images, adapter="image", method="jigsaw", encoder="small_cnn",
                     encoder_kwargs={"width": 0.25, "embed_dim": 16}, method_kwargs={"num_permutations": 10},
                     epochs=1, batch_size=8, progress=False)
    assert model.adapter.config["preset"] == "light"
    assert model.config["method_hparams"]["num_permutations"] == 10
    z = model.embed(images)
    assert z.shape == (24, 16) and np.isfinite(z).all()
    assert math.isfinite(model.config["history"][-1]["loss"])
