"""The de-clip estimator: the flow's input where the 8-bit LR image is clipped (``sr_engine.models.declip``).

``declip_lr`` with an estimate keeps every unclipped pixel, keeps the clipped ones on their side of the clip and
pushes them the tuned amount further; the estimator learns the unclipped ``D x`` of real digits far better than
the clip value; the declip training stage writes the engine again with it, leaves the tuning digits out, and the
engine's strict banks stay exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sr_engine import load_engine
from sr_engine.data import load_mnist
from sr_engine.degradation import get_degradation, make_lr
from sr_engine.eval.strict_tuning import TUNE_DIGITS_PER_CLASS, training_images, tuning_rows
from sr_engine.models.declip import DeclipConfig, DeclipNet, clipped_mask, declip_loss
from sr_engine.projection import declip_lr
from sr_engine.train import HRBatches, TrainConfig, train_ddpm, train_declip, train_flow

from conftest import tiny_flow_engine

TINY_FLOW = {"hidden": 8, "blocks_per_level": 2}
TINY_DDPM = {"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4}


@st.composite
def lr_and_estimate(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    lr = rng.choice(np.array([0, 0, 0, 1, 17, 128, 254, 255, 255], dtype=np.uint8), size=(1, h, w))
    est = rng.normal(0.5, 0.6, size=(1, h, w))
    return lr, est, draw(st.sampled_from([0.0, 1.0, 2.5, 12.0]))


@settings(max_examples=60, deadline=None)
@given(lr_and_estimate())
def test_declip_with_an_estimate_keeps_the_clipped_side(case):
    lr, est, amount = case
    out = declip_lr(lr, amount, est)
    plain = declip_lr(lr, amount)
    a = amount / 255.0
    mid = (lr > 0) & (lr < 255)
    np.testing.assert_array_equal(out[mid], lr[mid] / 255.0)  # the LR image gives y there
    assert np.all(out[lr == 0] <= -a + 1e-15) and np.all(out[lr == 255] >= 1 + a - 1e-15)
    np.testing.assert_allclose(out[lr == 0], np.minimum(est[lr == 0], 0) - a)
    np.testing.assert_allclose(out[lr == 255], np.maximum(est[lr == 255], 1) + a)
    # an estimate at the clip is the constant push of old; torch in, torch out
    np.testing.assert_array_equal(declip_lr(lr, amount, lr / 255.0), plain)
    t = declip_lr(torch.from_numpy(lr), amount, torch.from_numpy(est))
    assert isinstance(t, torch.Tensor) and np.allclose(t.numpy(), out)


def test_declip_estimate_is_checked():
    lr = np.zeros((1, 3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="shape"):
        declip_lr(lr, 2.0, np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        declip_lr(lr, 2.0, np.full((1, 3, 3), np.nan))
    with pytest.raises(ValueError, match="layers"):
        DeclipNet(DeclipConfig(layers=1))


def test_estimator_learns_the_unclipped_lr_of_real_digits():
    """Fit on 300 training digits at x4, scored on 100 others: the unclipped D(HR) at the clipped LR pixels is
    predicted far better than by the clip value (0) the LR image holds."""
    torch.manual_seed(0)
    d = load_mnist("train", pad_to=28)
    hr = d.images[np.r_[0:300, 1000:1100]]
    deg = get_degradation((28, 28), 4, "bicubic")
    y = (deg.down(torch.from_numpy(hr).double()) / 255.0).float()[:, None]
    lr = torch.from_numpy(make_lr(hr, 4).astype(np.float32) / 255.0)[:, None]
    net = DeclipNet(DeclipConfig(width=16, layers=3))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(150):
        idx = torch.randint(0, 300, (64,), generator=torch.Generator().manual_seed(step))
        loss = declip_loss(net, lr[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        m = clipped_mask(torch.round(lr[300:] * 255))
        fit = ((net(lr[300:]) - y[300:]) * 255)[m].pow(2).mean().sqrt().item()
        at_clip = ((lr[300:] - y[300:]) * 255)[m].pow(2).mean().sqrt().item()
    assert m.float().mean() > 0.3  # x4 digits: about half the LR pixels read 0
    assert fit < 0.6 * at_clip, (fit, at_clip)


def test_tuning_rows_are_left_out_of_the_estimators_batches():
    labels = load_mnist("train", pad_to=28).labels
    rows = tuning_rows(labels)
    assert len(rows) == 10 * TUNE_DIGITS_PER_CLASS
    assert np.array_equal(np.sort(tuning_rows(labels, 100)), np.sort(np.concatenate(
        [np.flatnonzero(labels == k)[:10] for k in range(10)])))
    with pytest.raises(ValueError, match="at most"):
        tuning_rows(labels, 10 * TUNE_DIGITS_PER_CLASS + 10)
    full = HRBatches(28, 8, 0, seed=0)
    kept = HRBatches(28, 8, 0, seed=0, exclude=rows)
    assert len(kept.images) == len(full.images) - len(rows)
    tune = torch.from_numpy(training_images("mnist", 4, 200).astype(np.float32))
    flat = kept.images.flatten(1)
    assert not any(bool((flat == t.flatten()).all(1).any()) for t in tune[:: 20])


def test_declip_stage_writes_the_engine_again_with_its_estimator(tmp_path):
    def cfg(stage, steps, **kw):
        return TrainConfig(model="mnist-x4", stage=stage, steps=steps, batch_size=8, warmup=2, ckpt_every=2,
                           work_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "ckpt"), flow=TINY_FLOW,
                           ddpm=TINY_DDPM, **kw)

    train_flow(cfg("flow", 2))
    train_ddpm(cfg("ddpm", 2))
    first = tmp_path / "first.pt"
    (tmp_path / "ckpt" / "mnist-x4.pt").rename(first)
    with pytest.raises(ValueError, match="--init-from"):
        train_declip(cfg("declip", 2, lr=2e-3))
    out = train_declip(cfg("declip", 4, lr=2e-3, init_from=str(first), declip={"width": 8, "layers": 3}))
    before, after = torch.load(first, weights_only=True), torch.load(out, weights_only=True)
    for part in ("flow_state", "unet_state"):
        for k, v in before[part].items():
            assert torch.equal(v, after[part][k])
    info = after["train_info"]["declip"]
    assert info["steps"] == 4 and info["left_out_rows"] == 10 * TUNE_DIGITS_PER_CLASS
    assert info["rmse_grey"] > 0 and after["train_info"]["ddpm_steps"] == 2

    eng = load_engine(str(out))
    plain = load_engine(str(first))
    assert eng.declip is not None and plain.declip is None
    assert eng.config["declip"] == {"channels": 1, "width": 8, "layers": 3, "unit_grey": 10.0}
    hr = np.zeros((28, 28), dtype=np.uint8)
    hr[6:22, 8:20] = 255  # LR: 255 inside the block, 0 far from it, greys between
    lr = make_lr(hr[None], 4)[0]
    assert (lr == 0).any() and (lr == 255).any() and ((lr > 0) & (lr < 255)).any()
    a, b = eng.flow_input(lr[None]), plain.flow_input(lr[None])
    inside = (lr > 0) & (lr < 255)
    np.testing.assert_array_equal(a[0][inside], b[0][inside])
    amount = eng.strict.declip_grey / 255
    assert np.all(a[0][lr == 0] <= -amount + 1e-12) and np.all(a[0][lr == 255] >= 1 + amount - 1e-12)
    assert not np.allclose(a, b)  # the estimator moves the clipped pixels
    bank = eng.sample_bank(lr, n=4, steps=2, seed=0)
    back = make_lr(bank.images, 4)
    assert all(np.array_equal(x, lr) for x in back)  # strict: every 8-bit sample rounds back


def test_engine_refuses_an_estimator_of_other_channels():
    with pytest.raises(ValueError, match="channel"):
        tiny_flow_engine(declip=DeclipNet(DeclipConfig(channels=3)))
