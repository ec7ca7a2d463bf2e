"""Metrics, one definition each: LR-PSNR (NTIRE), PSNR, SSIM, diversity, consistency MSE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import smooth_hr
from sr_engine.metrics import (
    CONSISTENT_DB,
    EXACT_DB,
    consistency_mse,
    diversity,
    downscale_255,
    flow_consistency,
    lr_psnr,
    lr_psnr_batch,
    psnr,
    psnr_from_mse,
    spread_skill,
    ssim,
)


def _hr_u8(h=28, w=28, seed=0) -> np.ndarray:
    return np.round(smooth_hr(h, w, seed) * 255).astype(np.uint8)


def _lr_of(hr: np.ndarray, scale: int) -> np.ndarray:
    return np.round(np.clip(downscale_255(hr, scale), 0, 255)).astype(np.uint8)


def test_constants():
    assert EXACT_DB == 100.0 and CONSISTENT_DB == 45.0


@pytest.mark.parametrize("scale", [2, 4])
def test_lr_psnr_of_exact_downscale_is_exact(scale):
    hr = _hr_u8()
    lr = _lr_of(hr, scale)
    assert lr.shape == (28 // scale, 28 // scale)
    assert lr_psnr(hr, lr, scale) == EXACT_DB
    # float input on [0, 1] means the same image
    assert lr_psnr(hr.astype(np.float64) / 255, lr, scale) == EXACT_DB


def test_lr_psnr_of_perturbed_downscale_is_finite_and_lower():
    hr = _hr_u8()
    lr = _lr_of(hr, 4)
    lr2 = lr.copy()
    lr2[3, 3] = lr2[3, 3] + 1 if lr2[3, 3] < 255 else lr2[3, 3] - 1
    v = lr_psnr(hr, lr2, 4)
    assert math.isfinite(v) and v < EXACT_DB
    # one grey level off on one of 49 pixels: MSE = 1/49
    assert v == pytest.approx(10 * math.log10(255**2 * 49), abs=1e-9)
    # a visibly different image is far below the consistency threshold
    other = _hr_u8(seed=5)[::-1].copy()
    assert lr_psnr(other, lr, 4) < CONSISTENT_DB


def test_lr_psnr_rgb():
    hr = np.stack([_hr_u8(16, 24, s) for s in range(3)], axis=-1)  # (H, W, 3)
    lr = _lr_of(hr, 4)
    assert lr.shape == (4, 6, 3)
    assert lr_psnr(hr, lr, 4) == EXACT_DB
    lr[0, 0, 1] ^= 1
    assert lr_psnr(hr, lr, 4) < EXACT_DB


def test_lr_psnr_batch_matches_single():
    hr = _hr_u8()
    lr = _lr_of(hr, 4)
    rng = np.random.default_rng(0)
    bank = np.stack([hr, np.clip(hr.astype(int) + rng.integers(-30, 31, hr.shape), 0, 255).astype(np.uint8),
                     _hr_u8(seed=3)])
    got = lr_psnr_batch(bank, lr, 4)
    assert got.shape == (3,) and got.dtype == np.float64
    np.testing.assert_allclose(got, [lr_psnr(b, lr, 4) for b in bank])
    assert got[0] == EXACT_DB and got[2] < EXACT_DB


def test_psnr():
    a = _hr_u8()
    assert psnr(a, a.copy()) == EXACT_DB
    b = a.copy()
    b[0, 0] = a[0, 0] + 10 if a[0, 0] <= 245 else a[0, 0] - 10
    v = psnr(a, b)
    assert math.isfinite(v) and v < EXACT_DB
    assert v == pytest.approx(10 * math.log10(255**2 / (100 / a.size)))
    # floats on [0, 1] are on the same scale as uint8
    assert psnr(a / 255.0, b / 255.0) == pytest.approx(v)


def test_psnr_from_mse():
    assert psnr_from_mse(0.0) == EXACT_DB
    assert psnr_from_mse(255.0**2) == pytest.approx(0.0)
    assert psnr_from_mse(1.0) == pytest.approx(20 * math.log10(255))
    assert psnr_from_mse(1e-20) == EXACT_DB  # capped


def test_ssim():
    a = _hr_u8()
    assert ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-12)
    rng = np.random.default_rng(1)
    noisy = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(a.astype(int) + rng.integers(-120, 121, a.shape), 0, 255).astype(np.uint8)
    s1, s2 = ssim(a, noisy), ssim(a, noisier)
    assert s1 < 0.99 and s2 < s1
    assert ssim(a, noisy) == pytest.approx(ssim(noisy, a))  # symmetric
    rgb = np.stack([a, a, a], -1)
    assert ssim(rgb, rgb) == pytest.approx(1.0, abs=1e-12)


def test_diversity():
    img = _hr_u8()
    assert diversity(np.stack([img] * 5)) == pytest.approx(0.0, abs=1e-12)  # float rounding of the mean only
    bank = np.stack([img, _hr_u8(seed=1), _hr_u8(seed=2)])
    assert diversity(bank) > 0
    # known value: two images that differ by 255 everywhere -> std 0.5 on [0, 1]
    two = np.stack([np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)])
    assert diversity(two) == pytest.approx(0.5)


def test_spread_skill_known_values_and_calibration():
    # two samples 0 and 1 around an HR image of 0.5: each is 0.5 off (skill 0.25), they are 1 apart (spread 1)
    bank = np.stack([np.zeros((4, 4)), np.ones((4, 4))])
    assert spread_skill(bank, np.full((4, 4), 0.5)) == pytest.approx((0.25, 1.0))
    img = _hr_u8()
    skill, spread = spread_skill(np.stack([img] * 3), img)
    assert skill == 0.0 and spread == pytest.approx(0.0, abs=1e-15)
    # calibrated: the HR image is one more draw from the bank's law -> skill / spread about 1; a bank drawn at
    # half the spread of the truth's law -> about (1 + 0.25) / (2 * 0.25) = 2.5 (over-confident)
    rng = np.random.default_rng(0)
    mean = rng.random((16, 16))
    draw = lambda k, s: mean + s * rng.standard_normal((k, 16, 16))  # noqa: E731
    cal = np.mean([np.divide(*spread_skill(draw(8, 0.1), draw(1, 0.1)[0])) for _ in range(400)])
    cold = np.mean([np.divide(*spread_skill(draw(8, 0.05), draw(1, 0.1)[0])) for _ in range(400)])
    assert cal == pytest.approx(1.0, abs=0.05) and cold == pytest.approx(2.5, abs=0.15)
    with pytest.raises(ValueError, match="at least two"):
        spread_skill(img[None], img)


def test_consistency_mse_units():
    sr = np.full((16, 16), 0.5)
    # rows of D sum to one, so a constant image downscales to the same constant
    lr = np.full((4, 4), 0.51)
    assert consistency_mse(sr, lr, 4) == pytest.approx(1e-4 / 1e-5)  # MSE 1e-4 on [0, 1] -> 10 units
    hr = _hr_u8()
    assert consistency_mse(hr, downscale_255(hr, 4) / 255.0, 4) == pytest.approx(0.0, abs=1e-12)
    # uint8 LR: rounding the exact downscale leaves at most (0.5 / 255)^2 / 1e-5 ~ 0.38 units
    assert 0 < consistency_mse(hr, _lr_of(hr, 4), 4) <= 0.25 / 255**2 / 1e-5


def test_downscale_255_matches_degradation():
    from sr_engine.degradation import get_degradation

    hr = _hr_u8()
    d = get_degradation((28, 28), 4).down(torch.from_numpy(hr.astype(np.float64) / 255)).numpy() * 255
    np.testing.assert_allclose(downscale_255(hr, 4), d, atol=1e-10)
    batch = np.stack([hr, hr[::-1]])
    out = downscale_255(batch, 4)
    assert out.shape == (2, 7, 7)
    np.testing.assert_allclose(out[0], d, atol=1e-10)


def test_flow_consistency():
    y = torch.zeros(2, 1, 3, 3)
    y_hat = y.clone()
    y_hat[1] += 0.1
    got = flow_consistency(y_hat, y)
    assert got.shape == (2,)
    torch.testing.assert_close(got, torch.tensor([0.0, 0.01]))


@pytest.mark.parametrize("lr_shape", [(1, 1), (7, 1), (1, 7), (3, 3)])
def test_lr_psnr_refuses_an_lr_image_of_another_size(lr_shape):
    """A 28x28 SR image at x4 belongs to a 7x7 LR image; a 1x1 or 7x1 one must not be broadcast into a score."""
    hr = _hr_u8()
    lr = np.zeros(lr_shape, np.uint8)
    with pytest.raises(ValueError):
        lr_psnr(hr, lr, 4)
    with pytest.raises(ValueError):
        lr_psnr_batch(hr[None], lr, 4)


# ---- background haze (issue 15) ---------------------------------------------------------------------------
def test_background_haze_is_the_mean_grey_far_from_strokes():
    from sr_engine.metrics import background_haze, background_mask

    hr = np.zeros((12, 12), np.uint8)
    hr[5:7, 5:7] = 255  # a 2x2 stroke: pixels within 2 of it (a 6x6 square) are not background
    mask = background_mask(hr)
    assert mask.sum() == 144 - 36 and not mask[3:9, 3:9].any() and mask[2, 2] and mask[9, 9]
    sr = hr.copy()
    sr[3:9, 3:9] = 40  # haze next to the stroke does not count
    assert background_haze(sr, hr) == 0.0
    sr[0, :] = 108  # 12 background pixels at 108 grey
    assert background_haze(sr, hr) == pytest.approx(12.0)  # 12 pixels at 108 grey over 108 background pixels
    # a bank is averaged; a faint HR pixel (< half ink) is background
    assert background_haze(np.stack([sr, hr]), hr) == pytest.approx(6.0)
    faint = hr.copy()
    faint[0, 0] = 100
    assert background_mask(faint)[0, 0]


def test_background_haze_of_dark_ink_and_colour():
    from sr_engine.metrics import background_haze

    hr = np.full((10, 10), 230, np.uint8)
    hr[4:6, 4:6] = 10  # dark text on a light plate
    sr = hr.copy()
    sr[0, 0] = 200
    assert background_haze(sr, hr, dark_ink=True) == pytest.approx(30 / 64)
    assert np.isnan(background_haze(sr, hr))  # as light strokes, everything is near a stroke
    rgb = np.repeat(hr[..., None], 3, -1)
    sr_rgb = np.repeat(sr[..., None], 3, -1)
    assert background_haze(sr_rgb, rgb, dark_ink=True) == pytest.approx(30 / 64)


def test_background_ssim_loss_splits_one_minus_ssim_by_where_the_error_lies():
    """Noise deep inside a stroke costs the background part nothing; faint noise far out on the background is all
    of 1 - SSIM; a bank is the mean of its samples; the HR image itself loses nothing; plates use dark ink."""
    from sr_engine.metrics import background_ssim_loss, ssim, ssim_map

    rng = np.random.default_rng(0)
    hr = np.zeros((40, 40), np.uint8)
    hr[10:30, 10:30] = 200  # one big stroke; background: more than 2 px from it
    inside = hr.copy()
    inside[14:26, 14:26] = np.clip(200 + rng.integers(-20, 21, (12, 12)), 0, 255)  # >= 4 px inside the stroke
    assert 1 - ssim(inside, hr) > 0.01 and background_ssim_loss(inside, hr) == 0.0
    outside = hr.copy()
    outside[:4, :] = rng.integers(0, 4, (4, 40))  # faint texture >= 6 px from the stroke
    assert background_ssim_loss(outside, hr) == pytest.approx(1 - ssim(outside, hr), rel=1e-12)
    assert 1 - ssim(outside, hr) > 0.005
    both = np.stack([inside, outside])
    assert background_ssim_loss(both, hr) == pytest.approx(background_ssim_loss(outside, hr) / 2, rel=1e-12)
    assert background_ssim_loss(hr, hr) == 0.0
    assert ssim_map(outside, hr).shape == (1, 34, 34)
    plate = 255 - hr  # dark ink on a light plate
    assert background_ssim_loss(255 - outside, plate, dark_ink=True) == pytest.approx(1 - ssim(255 - outside, plate))
