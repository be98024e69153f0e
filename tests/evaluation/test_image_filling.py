"""Classic image fills and PSNR: hand-computed cases."""
from __future__ import annotations

import math

import pytest
import torch

from multissl.evaluation.image_filling import (center_block_mask, diffusion_fill, mean_fill, mean_image_fill,
                                               patch_mask_to_pixels, psnr)


def test_psnr_over_hidden_pixels_only() -> None:
    truth = torch.zeros(2, 1, 2, 2)
    filled = truth.clone()
    filled[0, 0, 0, 0] = 0.1  # hidden: squared error 0.01 over 2 hidden pixels -> MSE 0.005
    filled[0, 0, 1, 1] = 1.0  # visible: ignored
    hidden = torch.tensor([[[True, True], [False, False]], [[True, False], [False, False]]])
    out = psnr(filled, truth, hidden)
    assert out[0].item() == pytest.approx(10 * math.log10(1 / 0.005), rel=1e-5)
    assert out[1].item() == pytest.approx(100.0)  # perfect fill: capped


def test_mean_fills() -> None:
    img = torch.tensor([[[[0.0, 1.0], [0.5, 0.9]]]])
    hidden = torch.tensor([[[False, False], [False, True]]])
    filled = mean_fill(img, hidden)
    assert filled[0, 0, 1, 1].item() == pytest.approx(0.5)  # (0 + 1 + 0.5) / 3
    assert torch.equal(filled[0, 0, 0], img[0, 0, 0])
    mean_image = torch.full((1, 2, 2), 0.25)
    assert mean_image_fill(img, hidden, mean_image)[0, 0, 1, 1].item() == pytest.approx(0.25)


def test_diffusion_fill_interpolates_a_linear_ramp_exactly() -> None:
    # a linear function is harmonic, so diffusion recovers it inside the hole
    ramp = torch.linspace(0, 1, 12).expand(12, 12).clone()[None, None]
    hidden = torch.zeros(1, 12, 12, dtype=torch.bool)
    hidden[0, 3:9, 3:9] = True
    filled = diffusion_fill(ramp, hidden, iterations=2000)
    assert torch.allclose(filled, ramp, atol=1e-3)
    assert psnr(filled, ramp, hidden).item() > psnr(mean_fill(ramp, hidden), ramp, hidden).item() + 10


def test_patch_and_center_masks() -> None:
    m = center_block_mask(2, (7, 7), fraction=0.45)
    assert m.shape == (2, 49) and int(m[0].sum()) == 9
    grid = m[0].view(7, 7)
    assert grid[2:5, 2:5].all() and int(grid.sum()) == 9
    pixels = patch_mask_to_pixels(m, (7, 7), 4)
    assert pixels.shape == (2, 28, 28) and pixels[0, 8:20, 8:20].all() and int(pixels[0].sum()) == 144
