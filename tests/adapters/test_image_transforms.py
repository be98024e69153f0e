"""Each batched op against torchvision.transforms.v2.functional applied per sample."""
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from multissl.adapters import image_transforms as T

B = 12
TOL = 1e-4


def _per_sample(fn, x, *params):
    return torch.stack([fn(x[i], *(p[i].item() if isinstance(p, torch.Tensor) else p for p in params))
                        for i in range(len(x))])


@pytest.fixture
def rgb():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, 3, 13, 17, generator=g)
    # quantised pixels create ties between channels (the branchy part of the HSV code)
    x[: B // 2] = (x[: B // 2] * 4).round() / 4
    x[0, :, :3, :3] = 0.5  # gray pixels: zero chroma
    return x


@pytest.fixture
def gray():
    return torch.rand(B, 1, 11, 9, generator=torch.Generator().manual_seed(1))


def _factors(lo, hi, seed=2):
    return lo + (hi - lo) * torch.rand(B, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("channels", [1, 3])
def test_brightness_contrast_saturation_match_torchvision(rgb, gray, channels):
    x = rgb if channels == 3 else gray
    f = _factors(0.0, 2.0)
    for ours, ref in [(T.adjust_brightness, TF.adjust_brightness), (T.adjust_contrast, TF.adjust_contrast),
                      (T.adjust_saturation, TF.adjust_saturation)]:
        torch.testing.assert_close(ours(x.clone(), f), _per_sample(ref, x, f), atol=TOL, rtol=0)


def test_hue_matches_torchvision_hsv_round_trip(rgb, gray):
    for lo, hi in [(-0.5, 0.5), (-0.05, 0.05)]:
        h = _factors(lo, hi, seed=3)
        h[0], h[1] = -0.5, 0.5  # the ends of the range
        torch.testing.assert_close(T.adjust_hue(rgb, h), _per_sample(TF.adjust_hue, rgb, h), atol=TOL, rtol=0)
    torch.testing.assert_close(T.adjust_hue(gray, _factors(-0.5, 0.5)), gray)


def test_hue_zero_is_identity_and_keeps_value_and_chroma(rgb):
    torch.testing.assert_close(T.adjust_hue(rgb, torch.zeros(B)), rgb, atol=TOL, rtol=0)
    out = T.adjust_hue(rgb, _factors(-0.5, 0.5))
    torch.testing.assert_close(out.amax(1), rgb.amax(1), atol=TOL, rtol=0)
    torch.testing.assert_close(out.amax(1) - out.amin(1), rgb.amax(1) - rgb.amin(1), atol=TOL, rtol=0)


def test_grayscale_and_solarize_match_torchvision(rgb, gray):
    torch.testing.assert_close(T.rgb_to_grayscale(rgb), _per_sample(lambda im: TF.rgb_to_grayscale(im, 3), rgb),
                               atol=TOL, rtol=0)
    torch.testing.assert_close(T.rgb_to_grayscale(gray), gray)
    for x in (rgb, gray):
        torch.testing.assert_close(T.solarize(x, 0.5), TF.solarize(x, 0.5))
        thr = _factors(0.2, 0.9)
        torch.testing.assert_close(T.solarize(x, thr), _per_sample(TF.solarize, x, thr))


@pytest.mark.parametrize("kernel_size", [3, 7])
def test_gaussian_blur_per_sample_sigma_matches_torchvision(rgb, gray, kernel_size):
    sigma = _factors(0.1, 2.0)
    for x in (rgb, gray):
        ref = _per_sample(lambda im, s: TF.gaussian_blur(im, [kernel_size, kernel_size], [s, s]), x, sigma)
        torch.testing.assert_close(T.gaussian_blur(x, sigma, kernel_size), ref, atol=TOL, rtol=0)
    with pytest.raises(ValueError):
        T.gaussian_blur(rgb, sigma, 4)


@pytest.mark.parametrize("size", [(24, 24), (13, 17), (8, 6)])
def test_resized_crop_and_flip_match_torchvision(rgb, size):
    g = torch.Generator().manual_seed(4)
    top, left, h, w = T.sample_crop_boxes(B, 13, 17, (0.08, 1.0), (3 / 4, 4 / 3), generator=g)
    flip = torch.rand(B, generator=g) < 0.5
    ours = T.resized_crop(rgb, top, left, h, w, size, flip)
    upscale = all(size[0] >= int(h[i]) and size[1] >= int(w[i]) for i in range(B))
    ref = []
    for i in range(B):
        # antialiasing only changes downscaling; RandomResizedCrop's default is antialias=True
        r = TF.resized_crop(rgb[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), list(size), antialias=upscale)
        ref.append(TF.horizontal_flip(r) if flip[i] else r)
    torch.testing.assert_close(ours, torch.stack(ref), atol=TOL, rtol=0)


def test_full_crop_without_flip_is_identity(rgb):
    n = len(rgb)
    out = T.resized_crop(rgb, torch.zeros(n), torch.zeros(n), torch.full((n,), 13), torch.full((n,), 17), (13, 17))
    torch.testing.assert_close(out, rgb, atol=1e-5, rtol=0)


def test_crop_boxes_follow_random_resized_crop_rules():
    g = torch.Generator().manual_seed(5)
    H, W = 32, 40
    top, left, h, w = T.sample_crop_boxes(4000, H, W, (0.2, 1.0), (3 / 4, 4 / 3), generator=g)
    assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= H).all() and (left + w <= W).all()
    frac = (h * w).double() / (H * W)
    assert frac.min() > 0.15 and frac.max() <= 1.0  # rounding widens the range slightly
    ratio = w.double() / h.double()
    assert ratio.min() > 0.6 and ratio.max() < 1.6
    assert 0.45 < frac.mean() < 0.75  # ~U(0.2, 1) where boxes fit
    # every position is reachable: offsets spread over the allowed range
    assert (top == 0).any() and (top + h == H).any()
    # impossible request -> torchvision's central fallback crop
    top, left, h, w = T.sample_crop_boxes(5, 10, 40, (0.9, 1.0), (1.0, 1.0), generator=g)
    assert h.tolist() == [10] * 5 and w.tolist() == [10] * 5 and left.tolist() == [15] * 5 and top.tolist() == [0] * 5


def test_color_jitter_random_order_matches_torchvision_sequence(rgb):
    s = T.AugmentParams(cj_prob=0.7, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.3)
    p = T.sample_params(rgb, s, generator=torch.Generator().manual_seed(6))
    assert p.cj_apply.any() and not p.cj_apply.all()
    orders = {tuple(o.tolist()) for o in p.cj_order}
    assert len(orders) > 3  # the order really is per sample
    ours = T.color_jitter(rgb.clone(), p)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    factors = [p.brightness, p.contrast, p.saturation, p.hue]
    for i in range(B):
        ref = rgb[i]
        if p.cj_apply[i]:
            for j in p.cj_order[i].tolist():
                ref = fns[j](ref, factors[j][i].item())
        torch.testing.assert_close(ours[i], ref, atol=TOL, rtol=0)


def test_augment_matches_per_sample_torchvision_pipeline(rgb):
    s = T.AugmentParams(crop_scale=(0.2, 1.0), gray_prob=0.5, blur_prob=0.5, blur_kernel_size=5,
                        solarize_prob=0.5, hue=0.2)
    p = T.sample_params(rgb, s, generator=torch.Generator().manual_seed(7), size=(16, 16))
    ours = T.augment(rgb, p)
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    factors = [p.brightness, p.contrast, p.saturation, p.hue]
    for i in range(B):
        r = TF.resized_crop(rgb[i], int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]), [16, 16])
        if p.flip[i]:
            r = TF.horizontal_flip(r)
        if p.cj_apply[i]:
            for j in p.cj_order[i].tolist():
                r = fns[j](r, factors[j][i].item())
        if p.gray[i]:
            r = TF.rgb_to_grayscale(r, 3)
        if p.blur[i]:
            r = TF.gaussian_blur(r, [5, 5], [p.sigma[i].item()] * 2)
        if p.solarize[i]:
            r = TF.solarize(r, 0.5)
        torch.testing.assert_close(ours[i], r, atol=TOL, rtol=0)


def test_sample_params_reproducible_and_augment_leaves_input_alone(rgb):
    s = T.AugmentParams()
    a = T.sample_params(rgb, s, generator=torch.Generator().manual_seed(8))
    b = T.sample_params(rgb, s, generator=torch.Generator().manual_seed(8))
    for name in ("top", "left", "height", "width", "flip", "brightness", "hue", "cj_order", "sigma"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    before = rgb.clone()
    T.augment(rgb, a)
    T.augment(rgb, T.sample_params(rgb, T.AugmentParams(crop=False, hflip_prob=0.0), torch.Generator()))
    assert torch.equal(rgb, before)


def test_resize_keeps_aspect_by_centre_crop():
    x = torch.zeros(2, 3, 20, 40, dtype=torch.uint8)
    x[..., :, 6:34] = 200  # more than the centre half: the crop keeps only this part
    y = T.resize(x, 10)
    assert y.shape == (2, 3, 10, 10) and y.dtype == torch.uint8
    assert (y == 200).all()
    assert T.resize(x, (20, 40)) is x
    assert math.isclose(float(T.resize(x.float(), 10).mean()), 200.0, rel_tol=1e-5)
