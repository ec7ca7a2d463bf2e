"""Every shipped model on disk: strict banks of LR images made from *training* data (MNIST training rows, or
training renders for a plates model) are consistent."""

from __future__ import annotations

import numpy as np
import pytest

import sr_engine
from sr_engine.data import load_mnist
from sr_engine.metrics import CONSISTENT_DB, downscale_255, lr_psnr_batch

MODELS = sr_engine.list_models()
# training rows only (never i % 500 >= 400): the first digit of classes 0, 4 and 8 of the training split
TRAIN_INDICES = [0, 1600, 3200]

if not MODELS:
    pytestmark = pytest.mark.skip(reason="no shipped model found under data/checkpoints")


@pytest.fixture(scope="module", params=MODELS or ["<none>"])
def shipped(request):
    return request.param, sr_engine.load_engine(request.param)


def _pad_to(engine) -> int:
    flow = getattr(engine, "flow", None)
    hr = tuple(flow.config.hr_size) if flow is not None else None
    return 32 if engine.scale == 8 and hr == (32, 32) else 28


def _lr_images(engine) -> tuple[np.ndarray, np.ndarray]:
    if getattr(engine, "domain", "") == "plates":
        from sr_engine.plates import render_plates

        hr = render_plates(3, seed=12345, split="train").images
        return hr, np.round(np.clip(downscale_255(hr, engine.scale), 0, 255)).astype(np.uint8)
    digits = load_mnist("train", pad_to=_pad_to(engine))
    assert not (digits.rows[TRAIN_INDICES] % 500 >= 400).any()
    hr = digits.images[TRAIN_INDICES]
    lr = np.round(np.clip(downscale_255(hr, engine.scale), 0, 255)).astype(np.uint8)
    if getattr(engine, "channels", 1) == 3:
        hr, lr = np.repeat(hr[..., None], 3, -1), np.repeat(lr[..., None], 3, -1)
    return hr, lr


@pytest.mark.slow
def test_shipped_model_strict_banks_are_consistent(shipped):
    name, engine = shipped
    assert isinstance(engine, sr_engine.SREngine)
    assert "strict" in engine.modes
    hr, lrs = _lr_images(engine)
    for lr in lrs:
        bank = engine.sample_bank(lr, n=8, steps=8, seed=0, mode="strict")
        assert bank.images.shape == (8, *hr.shape[1:]) and bank.images.dtype == np.uint8
        assert bank.model == name
        np.testing.assert_array_equal(bank.lr_psnr, lr_psnr_batch(bank.images, lr, engine.scale))
        assert bank.lr_psnr.min() >= CONSISTENT_DB, f"{name}: worst sample {bank.lr_psnr.min():.1f} dB"
        assert np.median(bank.lr_psnr) >= 60, f"{name}: median {np.median(bank.lr_psnr):.1f} dB"


def test_shipped_model_wrong_scale_raises(shipped):
    name, engine = shipped
    with pytest.raises(ValueError):
        sr_engine.load_engine(name, scale=engine.scale * 2)
    assert sr_engine.load_engine(name, scale=engine.scale).scale == engine.scale
