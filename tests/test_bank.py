"""Banks from a tiny real FlowEngine (untrained, seeded): consistency of strict mode, the other modes, seeds,
input validation, any LR size, PIL input, ensembles, and the loader registry."""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import randomize_last_layers, smooth_hr
from sr_engine import MODES, Bank, EnsembleReport, FlowEngine, SREngine, load_engine, sample_seeds
from sr_engine.models.flow import FlowConfig, PseudoInverseFlow
from sr_engine.models.kernel_diffusion import KernelDDPMConfig, build_unet
from sr_engine.metrics import CONSISTENT_DB, EXACT_DB, downscale_255, lr_psnr, lr_psnr_batch

SCALE = 4
TINY_DDPM = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def _parts(channels: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    flow = PseudoInverseFlow(FlowConfig(scale=SCALE, channels=channels, hr_size=(16, 16), hidden=8,
                                        blocks_per_level=2))
    randomize_last_layers(flow, seed=seed + 100, std=0.02)
    cfg = KernelDDPMConfig(channels=channels, scale=SCALE, **TINY_DDPM)
    return flow, build_unet(cfg), cfg


@pytest.fixture(scope="module")
def engine() -> FlowEngine:
    flow, unet, cfg = _parts()
    return FlowEngine("tiny-x4", flow, unet, cfg)


@pytest.fixture(scope="module")
def rgb_engine() -> FlowEngine:
    flow, unet, cfg = _parts(channels=3, seed=1)
    return FlowEngine("tiny-rgb-x4", flow, unet, cfg)


def _lr_of(hr: np.ndarray) -> np.ndarray:
    return np.round(np.clip(downscale_255(hr, SCALE), 0, 255)).astype(np.uint8)


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    """A 4x4 uint8 LR image (of a 16x16 HR image)."""
    return _lr_of(smooth_hr(16, 16, seed=0))


@pytest.fixture(scope="module")
def strict_bank(engine, lr) -> Bank:
    return engine.sample_bank(lr, n=8, steps=4, seed=0)


# ---- the contract ----------------------------------------------------------------------------------------
def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, SREngine)
    assert engine.scale == SCALE and engine.channels == 1
    assert engine.modes == ("strict", "flow", "prior")
    assert set(engine.modes) <= set(MODES) and len(MODES) == 5
    assert engine.schedulers == ("ddim", "dpmsolver", "ddpm") and engine.option_names == ()
    assert engine.max_lr_side == 128 and isinstance(engine.domain, str)
    members = [n for n in vars(SREngine) if not n.startswith("_")] + list(SREngine.__annotations__)
    assert all(hasattr(engine, n) for n in members)
    cfg = engine.config
    assert cfg["engine"] == "flow" and cfg["scale"] == SCALE and cfg["ddpm"]["block_out_channels"] == [8, 16]


def test_strict_bank_is_consistent(strict_bank, lr):
    bank = strict_bank
    assert len(bank) == 8
    assert bank.images.shape == (8, 16, 16) and bank.images.dtype == np.uint8
    assert bank.mode == "strict" and bank.steps == 4 and bank.scheduler == "ddim" and bank.model == "tiny-x4"
    assert bank.lr_psnr.shape == (8,)
    # the reported figures are the metric's own, recomputed from the images
    np.testing.assert_array_equal(bank.lr_psnr, lr_psnr_batch(bank.images, lr, SCALE))
    for img, v in zip(bank.images, bank.lr_psnr):
        assert v == lr_psnr(img, lr, SCALE)
        assert v == EXACT_DB or v >= CONSISTENT_DB
    assert bank.lr_psnr.min() >= CONSISTENT_DB
    assert bank.projection_residual is not None and bank.projection_residual.shape == (8,)
    assert bank.projection_residual.max() <= 1e-6
    assert bank.flow_consistency is not None and bank.flow_consistency.shape == (8,)
    assert np.isfinite(bank.flow_consistency).all() and (bank.flow_consistency >= 0).all()
    assert len(np.unique(bank.images.reshape(8, -1), axis=0)) == 8  # diverse samples
    assert bank.settings["seed"] == 0 and bank.seconds >= 0


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver", "ddpm"])
def test_strict_with_each_scheduler(engine, lr, scheduler):
    bank = engine.sample_bank(lr, n=3, steps=3, seed=5, scheduler=scheduler)
    assert bank.scheduler == scheduler
    assert bank.lr_psnr.min() >= CONSISTENT_DB and bank.projection_residual.max() <= 1e-6


def test_strict_with_timesteps_and_start_step(engine, lr):
    bank = engine.sample_bank(lr, n=2, seed=1, timesteps=[999, 600, 200], scheduler="dpmsolver")
    assert bank.steps == 3 and bank.settings["timesteps"] == [999, 600, 200]
    assert bank.lr_psnr.min() >= CONSISTENT_DB
    bank = engine.sample_bank(lr, n=2, steps=6, seed=1, start_step=3)
    assert bank.settings["start_step"] == 3 and bank.lr_psnr.min() >= CONSISTENT_DB
    with pytest.raises(ValueError):
        engine.sample_bank(lr, n=2, steps=6, seed=1, start_step=6)
    with pytest.raises(ValueError):
        engine.sample_bank(lr, n=2, seed=1, timesteps=[999, 600, 200], scheduler="ddim")


def test_default_mode_is_strict(engine, lr, strict_bank):
    bank = engine.sample_bank(lr, n=8, steps=4, seed=0, mode="strict")
    np.testing.assert_array_equal(bank.images, strict_bank.images)


@pytest.mark.parametrize("mode", ["flow", "prior"])
def test_flow_and_prior_modes_run(engine, lr, mode):
    bank = engine.sample_bank(lr, n=4, steps=3, seed=2, mode=mode)
    assert bank.mode == mode
    assert bank.images.shape == (4, 16, 16) and bank.images.dtype == np.uint8
    assert bank.projection_residual is None
    assert bank.lr_psnr.shape == (4,) and np.isfinite(bank.lr_psnr).all()
    assert bank.flow_consistency.shape == (4,) and np.isfinite(bank.flow_consistency).all()
    np.testing.assert_array_equal(bank.seeds, sample_seeds(2, 4))


def test_prior_temperature(engine, lr):
    cold = engine.sample_bank(lr, n=6, seed=3, mode="prior", tau=0.05)
    hot = engine.sample_bank(lr, n=6, seed=3, mode="prior", tau=1.0)
    assert cold.settings["tau"] == 0.05
    spread = lambda b: b.images.astype(np.float64).std(0).mean()  # noqa: E731
    assert spread(cold) < spread(hot)


# ---- seeds -----------------------------------------------------------------------------------------------
def test_sample_seeds():
    s = sample_seeds(7, 50)
    assert s.dtype == np.int64 and s.shape == (50,)
    assert s[0] == 7 and (s >= 0).all() and len(set(s.tolist())) == 50
    np.testing.assert_array_equal(sample_seeds(7, 50), s)
    np.testing.assert_array_equal(sample_seeds(7, 10), s[:10])  # a prefix does not depend on n
    assert not set(sample_seeds(0, 256).tolist()) & set(sample_seeds(1, 256).tolist())
    with pytest.raises(ValueError):
        sample_seeds(-1, 3)


@pytest.mark.parametrize("mode", ["strict", "flow", "prior"])
def test_a_sample_is_reproduced_from_its_seed(engine, lr, strict_bank, mode):
    bank = strict_bank if mode == "strict" else engine.sample_bank(lr, n=8, steps=4, seed=0, mode=mode)
    for i in range(len(bank)):
        one = engine.sample_bank(lr, n=1, steps=4, seed=int(bank.seeds[i]), mode=mode)
        assert one.seeds[0] == bank.seeds[i]
        diff = np.abs(one.images[0].astype(np.int16) - bank.images[i].astype(np.int16)).max()
        assert diff <= 1, f"sample {i}: {diff} grey levels"


def test_batching_does_not_change_samples(lr, strict_bank):
    flow, unet, cfg = _parts()  # same seed: the same weights as the module's engine
    small_batches = FlowEngine("tiny-x4", flow, unet, cfg, batch_size=3)
    bank = small_batches.sample_bank(lr, n=8, steps=4, seed=0)
    np.testing.assert_array_equal(bank.seeds, strict_bank.seeds)
    assert np.abs(bank.images.astype(np.int16) - strict_bank.images.astype(np.int16)).max() <= 1


def test_banks_with_different_seeds_differ(engine, lr, strict_bank):
    other = engine.sample_bank(lr, n=8, steps=4, seed=1)
    assert not set(other.seeds.tolist()) & set(strict_bank.seeds.tolist())
    for a in strict_bank.images:
        for b in other.images:
            assert not np.array_equal(a, b)


def test_same_call_twice_is_identical(engine, lr, strict_bank):
    again = engine.sample_bank(lr, n=8, steps=4, seed=0)
    np.testing.assert_array_equal(again.images, strict_bank.images)
    np.testing.assert_array_equal(again.seeds, strict_bank.seeds)
    np.testing.assert_array_equal(again.lr_psnr, strict_bank.lr_psnr)


# ---- input validation ------------------------------------------------------------------------------------
def _nan_lr():
    a = np.full((4, 4), 0.5)
    a[1, 2] = np.nan
    return a


BAD_LR = {
    "empty": np.zeros((0, 4), np.uint8),
    "empty-cols": np.zeros((4, 0), np.uint8),
    "nan": _nan_lr(),
    "inf": np.full((4, 4), np.inf),
    "float-above-one": np.full((4, 4), 1.5),
    "float-negative": np.full((4, 4), -0.1),
    "rgb-to-grey-model": np.zeros((4, 4, 3), np.uint8),
    "two-channels": np.zeros((4, 4, 2), np.uint8),
    "too-large": np.zeros((4, 129), np.uint8),
    "4d": np.zeros((1, 4, 4, 1), np.uint8),
    "1d": np.zeros(16, np.uint8),
    "int32": np.zeros((4, 4), np.int32),
    "bool": np.zeros((4, 4), bool),
    "rgba-pil": Image.new("RGBA", (4, 4)),
}


@pytest.mark.parametrize("name", list(BAD_LR))
def test_bad_lr_raises(engine, name):
    with pytest.raises(ValueError):
        engine.sample_bank(BAD_LR[name], n=1, steps=1)


def test_max_lr_side_is_configurable(lr):
    flow, unet, cfg = _parts()
    small = FlowEngine("tiny-x4", flow, unet, cfg, max_lr_side=3)
    with pytest.raises(ValueError):
        small.sample_bank(lr, n=1, steps=1)
    assert small.sample_bank(lr[:3, :3], n=1, steps=1).images.shape == (1, 12, 12)


@pytest.mark.parametrize("kwargs", [
    dict(mode="bogus"), dict(mode="guided"), dict(mode="free"), dict(mode="STRICT"),
    dict(n=0), dict(n=-2), dict(tau=0.0), dict(tau=-1.0), dict(tau=float("nan")),
    dict(steps=0), dict(seed=-1), dict(scheduler="euler"),
])
def test_bad_arguments_raise(engine, lr, kwargs):
    args = dict(n=1, steps=1)
    args.update(kwargs)
    with pytest.raises(ValueError):
        engine.sample_bank(lr, **args)


def test_rgb_lr_to_rgb_model_and_grey_to_rgb_model(rgb_engine):
    hr = np.stack([smooth_hr(12, 20, seed=s) for s in range(3)], axis=-1)
    lr = _lr_of(hr)
    assert lr.shape == (3, 5, 3)
    bank = rgb_engine.sample_bank(lr, n=3, steps=2, seed=0)
    assert bank.images.shape == (3, 12, 20, 3) and bank.images.dtype == np.uint8
    assert bank.lr_psnr.min() >= CONSISTENT_DB and bank.projection_residual.max() <= 1e-6
    with pytest.raises(ValueError):
        rgb_engine.sample_bank(lr[..., 0], n=1, steps=1)
    rep = rgb_engine.ensemble(bank.images, lr)
    assert rep.image.shape == (12, 20, 3) and rep.lr_psnr >= CONSISTENT_DB


# ---- sizes and input types -------------------------------------------------------------------------------
@pytest.mark.parametrize("lr_size", [(3, 5), (1, 1), (1, 6), (7, 2)])
def test_any_lr_size(engine, lr_size):
    h, w = lr_size
    lr = _lr_of(smooth_hr(h * SCALE, w * SCALE, seed=4))
    bank = engine.sample_bank(lr, n=3, steps=2, seed=0)
    assert bank.images.shape == (3, h * SCALE, w * SCALE)
    assert bank.lr_psnr.min() >= CONSISTENT_DB
    assert bank.projection_residual.max() <= 1e-6


def test_pil_and_float_inputs_match_the_array(engine, lr, strict_bank):
    pil = engine.sample_bank(Image.fromarray(lr, mode="L"), n=8, steps=4, seed=0)
    np.testing.assert_array_equal(pil.images, strict_bank.images)
    np.testing.assert_array_equal(pil.lr_psnr, strict_bank.lr_psnr)
    as_float = engine.sample_bank(lr.astype(np.float64) / 255.0, n=8, steps=4, seed=0)
    np.testing.assert_array_equal(as_float.images, strict_bank.images)
    one_channel = engine.sample_bank(lr[..., None], n=8, steps=4, seed=0)
    np.testing.assert_array_equal(one_channel.images, strict_bank.images)


def test_pil_rgb_input(rgb_engine):
    lr = _lr_of(np.stack([smooth_hr(8, 8, seed=s) for s in range(3)], axis=-1))
    bank = rgb_engine.sample_bank(Image.fromarray(lr, mode="RGB"), n=2, steps=2, seed=0)
    assert bank.images.shape == (2, 8, 8, 3) and bank.lr_psnr.min() >= CONSISTENT_DB


# ---- ensembles -------------------------------------------------------------------------------------------
def test_ensemble_of_strict_samples_is_consistent(engine, lr, strict_bank):
    rep = engine.ensemble(strict_bank.images[[0, 3, 5]], lr)
    assert isinstance(rep, EnsembleReport)
    assert rep.image.shape == (16, 16) and rep.image.dtype == np.uint8
    assert rep.n == 3 and rep.weights == pytest.approx([1 / 3] * 3)
    assert rep.lr_psnr >= CONSISTENT_DB and rep.lr_psnr == lr_psnr(rep.image, lr, SCALE)
    assert rep.flow_consistency is not None and rep.flow_consistency >= 0
    assert rep.consistency_mse >= 0 and rep.method == "pixel-mean"
    # D is linear: the mean of consistent samples is consistent, so "auto" has nothing to re-project
    assert not rep.reprojected and rep.lr_psnr_before == rep.lr_psnr
    expected = np.round(strict_bank.images[[0, 3, 5]].astype(np.float64).mean(0)).astype(np.uint8)
    assert np.abs(rep.image.astype(int) - expected).max() <= 1


def test_ensemble_weights(engine, lr, strict_bank):
    imgs = strict_bank.images[:3]
    rep = engine.ensemble(imgs, lr, weights=[0, 2, 0], reproject="never")
    np.testing.assert_array_equal(rep.image, imgs[1])  # all the weight on one sample
    assert rep.weights == [0.0, 1.0, 0.0]
    assert rep.lr_psnr == strict_bank.lr_psnr[1]
    rep = engine.ensemble(imgs, lr, weights=[3, 1, 0], reproject="never")
    expected = (0.75 * imgs[0].astype(np.float64) + 0.25 * imgs[1]) / 255
    assert np.abs(rep.image.astype(np.float64) / 255 - expected).max() <= 0.5 / 255 + 1e-12


@pytest.mark.parametrize("weights", [[1, 1], [1, 1, 1, 1], [1, -1, 1], [0, 0, 0], [1, float("nan"), 1],
                                     [1, float("inf"), 1], [[1, 1, 1]]])
def test_ensemble_bad_weights_raise(engine, lr, strict_bank, weights):
    with pytest.raises(ValueError):
        engine.ensemble(strict_bank.images[:3], lr, weights=weights)


def test_ensemble_reproject_always(engine, lr, strict_bank):
    rep = engine.ensemble(strict_bank.images[[1, 2]], lr, reproject="always")
    assert rep.reprojected
    assert rep.lr_psnr >= CONSISTENT_DB


def test_ensemble_reprojects_inconsistent_means(engine, lr):
    flow_bank = engine.sample_bank(lr, n=4, steps=3, seed=0, mode="flow")  # untrained flow: far from D x = y
    auto = engine.ensemble(flow_bank.images, lr)
    assert auto.lr_psnr_before < CONSISTENT_DB
    assert auto.reprojected and auto.lr_psnr >= CONSISTENT_DB
    never = engine.ensemble(flow_bank.images, lr, reproject="never")
    assert not never.reprojected and never.lr_psnr == never.lr_psnr_before < CONSISTENT_DB
    always = engine.ensemble(flow_bank.images, lr, reproject="always")
    np.testing.assert_array_equal(always.image, auto.image)


def test_ensemble_bad_inputs_raise(engine, lr, strict_bank):
    with pytest.raises(ValueError):
        engine.ensemble(strict_bank.images[:0], lr)
    with pytest.raises(ValueError):
        engine.ensemble(strict_bank.images.astype(np.float32) / 255, lr)
    with pytest.raises(ValueError):
        engine.ensemble(strict_bank.images[:2], lr, reproject="sometimes")
    with pytest.raises(ValueError):
        engine.ensemble(strict_bank.images[:2], np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("lr_shape", [(1, 1), (4, 1), (3, 3), (8, 8)])
def test_ensemble_size_mismatch_raises(engine, strict_bank, lr_shape):
    """16x16 samples belong to a 4x4 LR image at x4; any other LR size is an error, not a broadcast."""
    with pytest.raises(ValueError):
        engine.ensemble(strict_bank.images[:2], np.zeros(lr_shape, np.uint8))


# ---- the registry ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["no-such-model", "mnist-x3", "", "diffusers:/x", "diffusers:/nonexistent/dir"])
def test_load_engine_bad_names_raise(name):
    with pytest.raises(ValueError):
        load_engine(name)


def test_load_engine_from_a_checkpoint_path(tmp_path, engine, lr, strict_bank):
    path = tmp_path / "tiny.pt"
    torch.save({"format": 1, "engine": "flow", "name": "tiny-x4", "flow_config": asdict(engine.flow.config),
                "flow_state": engine.flow.state_dict(), "ddpm_config": engine.ddpm_config.to_dict(),
                "unet_state": engine.unet.state_dict(), "train_info": {"note": "test"}}, path)
    loaded = load_engine(str(path), scale=SCALE, batch_size=5)
    assert isinstance(loaded, FlowEngine) and loaded.name == "tiny-x4" and loaded.batch_size == 5
    assert loaded.checkpoint_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.train_info == {"note": "test"}
    bank = loaded.sample_bank(lr, n=8, steps=4, seed=0)
    assert np.abs(bank.images.astype(np.int16) - strict_bank.images.astype(np.int16)).max() <= 1
    with pytest.raises(ValueError):
        load_engine(str(path), scale=8)


@pytest.mark.parametrize("payload", [{"name": "no-engine-field"}, {"engine": "bogus"}, [1, 2, 3]])
def test_load_engine_refuses_foreign_checkpoints(tmp_path, payload):
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError):
        load_engine(str(path))


def test_load_engine_checks_the_checkpoint_format(tmp_path, engine):
    """Format 1 by number, by the shipped files' name, or by its keys alone; anything else names file and format."""
    st = {"engine": "flow", "name": "tiny-x4", "flow_config": engine.flow.config.to_dict(),
          "flow_state": engine.flow.state_dict(), "ddpm_config": engine.ddpm_config.to_dict(),
          "unet_state": engine.unet.state_dict()}
    for i, fmt in enumerate([{}, {"format": 1}, {"format": "sr_engine.flow-kernel-ddpm/1"}]):
        torch.save({**st, **fmt}, tmp_path / f"ok{i}.pt")
        assert load_engine(str(tmp_path / f"ok{i}.pt")).name == "tiny-x4"
    torch.save({**st, "format": 2}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match=r"future\.pt has checkpoint format 2.*format 1"):
        load_engine(str(tmp_path / "future.pt"))
    torch.save({k: v for k, v in st.items() if k != "unet_state"}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt .*missing \['unet_state'\]"):
        load_engine(str(tmp_path / "partial.pt"))
