"""Strict mode on the engines (issue 15): property tests on tiny seeded engines (a FlowEngine at x4 and x8, and the
diffusers engine's tiny RGB pipeline) with LR images full of 0 and 255 pixels: every strict sample rounds back to
the LR image exactly, the ensemble of exact samples stays exact after 8-bit rounding, an LR image that no image in
[0, 1] produces raises a StrictProjectionError naming the samples' seeds, and the settings travel with the config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import randomize_last_layers, tiny_ldm_pipeline
from sr_engine import FlowEngine, load_engine
from sr_engine.degradation import get_degradation, make_lr
from sr_engine.engines.base import sample_seeds
from sr_engine.engines.flow_engine import TUNED_STRICT, TUNED_STRICT_DECLIP, strict_settings_for
from sr_engine.metrics import EXACT_DB, lr_psnr_batch
from sr_engine.models.flow import FlowConfig, PseudoInverseFlow
from sr_engine.models.kernel_diffusion import KernelDDPMConfig, build_unet
from sr_engine.projection import StrictProjectionError, StrictSettings, rounds_back

LR_SIDE = 4
PROPS = settings(max_examples=8, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _engine(scale: int, strict: StrictSettings, seed: int = 0) -> FlowEngine:
    torch.manual_seed(seed)
    hr = LR_SIDE * scale
    flow = PseudoInverseFlow(FlowConfig(scale=scale, channels=1, hr_size=(hr, hr), hidden=8, blocks_per_level=1))
    randomize_last_layers(flow, seed=seed + 100, std=0.02)
    cfg = KernelDDPMConfig(channels=1, scale=scale, block_out_channels=(8, 16), layers_per_block=1,
                           norm_num_groups=4)
    return FlowEngine(f"tiny-x{scale}", flow, build_unet(cfg), cfg, strict=strict)


ENGINES = {
    4: _engine(4, StrictSettings(declip_grey=4.0, floor=0.01, dark_ink=False)),
    8: _engine(8, StrictSettings(declip_grey=8.0, floor=0.003, dark_ink=False)),
}
PLATE_LIKE = _engine(4, StrictSettings(declip_grey=2.0, floor=0.03, dark_ink=True), seed=1)


def hr_images(side: int):
    """HR images (side, side) uint8 made of k x k uniform blocks (k in 1, 2, 4), each black, white or random: LR
    images with many pixels at 0 and 255 (all of them for k = 1), clipped where the bicubic kernel overshoots."""
    def draw(k: int):
        return st.tuples(st.lists(st.sampled_from([0, 255, -1]), min_size=k * k, max_size=k * k),
                         st.integers(0, 2**31 - 1)).map(lambda a: _blocks(np.array(a[0]).reshape(k, k), side, a[1]))

    return st.sampled_from([1, 2, 2, 4]).flatmap(draw)


def _blocks(levels: np.ndarray, side: int, seed: int) -> np.ndarray:
    """Uniform blocks of ``levels`` (k, k) filling (side, side); -1 is a block of random grey levels."""
    rng = np.random.default_rng(seed)
    b = side // levels.shape[0]
    img = np.kron(levels, np.ones((b, b))).astype(np.float64)
    return np.where(img < 0, rng.integers(0, 256, img.shape), img).astype(np.uint8)


def _assert_exact(eng, images: np.ndarray, lr: np.ndarray) -> None:
    deg = get_degradation(images.shape[1:3], eng.scale, eng.kernel)
    chw = images[:, None] if images.ndim == 3 else np.moveaxis(images, -1, 1)
    lr_chw = lr[None] if lr.ndim == 2 else np.moveaxis(lr, -1, 0)
    assert rounds_back(deg, chw, lr_chw).all()
    assert (lr_psnr_batch(images, lr, eng.scale, eng.kernel) == EXACT_DB).all()


# ---- the flow engine --------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [4, 8])
@PROPS
@given(data=st.data())
def test_every_strict_sample_rounds_back(scale, data):
    eng = ENGINES[scale]
    hr = data.draw(hr_images(LR_SIDE * scale))
    lr = make_lr(hr, scale)
    bank = eng.sample_bank(lr, n=4, steps=2, seed=data.draw(st.integers(0, 1000)))
    _assert_exact(eng, bank.images, lr)
    assert bank.projection_residual.max() <= eng.projection_tol
    assert bank.settings["strict"] == eng.strict.to_dict()


@PROPS
@given(hr=hr_images(16), seed=st.integers(0, 1000))
def test_dark_ink_metric_is_exact_too(hr, seed):
    lr = make_lr(hr, 4)
    _assert_exact(PLATE_LIKE, PLATE_LIKE.sample_bank(lr, n=3, steps=2, seed=seed).images, lr)


@pytest.mark.parametrize("scale", [4, 8])
@PROPS
@given(data=st.data())
def test_ensemble_of_exact_samples_stays_exact(scale, data):
    eng = ENGINES[scale]
    hr = data.draw(hr_images(LR_SIDE * scale))
    lr = make_lr(hr, scale)
    bank = eng.sample_bank(lr, n=6, steps=2, seed=7)
    idx = data.draw(st.lists(st.integers(0, 5), min_size=2, max_size=6, unique=True))
    weights = data.draw(st.none() | st.lists(st.integers(1, 5), min_size=len(idx), max_size=len(idx)))
    rep = eng.ensemble(bank.images[idx], lr, weights=weights)
    assert rep.lr_psnr == EXACT_DB
    _assert_exact(eng, rep.image[None], lr)
    assert rep.flow_consistency is not None and rep.flow_consistency >= 0  # the flow check, reported as before
    # re-projected exactly when (and only when) the rounding of the plain mean broke it
    assert rep.reprojected == (rep.lr_psnr_before < EXACT_DB)


@pytest.mark.parametrize("scale", [4, 8])
def test_an_unreachable_lr_raises_naming_the_seeds(scale):
    """A 0/255 checkerboard: the bicubic kernel's support overlaps its neighbours', so no image in [0, 1] has
    D x above 254.5 grey at one LR pixel and below 0.5 at the next (the slab solver certifies it empty)."""
    eng = ENGINES[scale]
    board = ((np.indices((LR_SIDE, LR_SIDE)).sum(0) % 2) * 255).astype(np.uint8)
    with pytest.raises(StrictProjectionError) as err:
        eng.sample_bank(board, n=2, steps=1, seed=5)
    seeds = [int(s) for s in sample_seeds(5, 2)]
    assert err.value.seeds == seeds and err.value.indices == [0, 1]
    assert all(str(s) in str(err.value) for s in seeds)


@pytest.mark.parametrize("scale", [4, 8])
def test_the_shrink_changes_strict_samples_only_and_they_stay_exact(scale):
    """``shrink_grey`` smooths the flow's output before the projection: strict samples change and still round
    back; flow and prior mode, which do not project, are left as decoded."""
    eng = ENGINES[scale]
    shrunk = FlowEngine("shrunk", eng.flow, eng.unet, eng.ddpm_config,
                        strict=StrictSettings(eng.strict.declip_grey, eng.strict.floor, shrink_grey=24.0))
    rng = np.random.default_rng(scale)
    hr = _blocks(rng.choice([0, 255, -1], size=(2, 2)), LR_SIDE * scale, scale)
    lr = make_lr(hr, scale)
    a = shrunk.sample_bank(lr, n=4, steps=2, seed=5)
    b = eng.sample_bank(lr, n=4, steps=2, seed=5)
    _assert_exact(shrunk, a.images, lr)
    assert not np.array_equal(a.images, b.images)
    assert a.settings["strict"]["shrink_grey"] == 24.0
    for mode in ("flow", "prior"):
        assert np.array_equal(shrunk.sample_bank(lr, n=2, steps=2, seed=5, mode=mode).images,
                              eng.sample_bank(lr, n=2, steps=2, seed=5, mode=mode).images)


def test_flow_mode_uses_the_declipped_input_and_prior_does_not():
    eng = ENGINES[4]
    lr = np.array([[0, 0, 0, 0], [0, 255, 200, 0], [0, 90, 255, 0], [0, 0, 0, 0]], dtype=np.uint8)
    x = eng.flow_input(lr[None])
    assert (x[0][(lr > 0) & (lr < 255)] == lr[(lr > 0) & (lr < 255)] / 255.0).all()
    assert (x[0][lr == 0] == -4.0 / 255).all() and (x[0][lr == 255] == 1 + 4.0 / 255).all()
    plain = FlowEngine("plain", eng.flow, eng.unet, eng.ddpm_config, strict=StrictSettings())
    # a large amount, so that the untrained flow's 8-bit output shows it (4 grey vanish in its clipping)
    big = FlowEngine("big", eng.flow, eng.unet, eng.ddpm_config, strict=StrictSettings(declip_grey=60.0))
    for mode, same in (("flow", False), ("prior", True)):
        a = big.sample_bank(lr, n=2, steps=2, seed=1, mode=mode).images
        b = plain.sample_bank(lr, n=2, steps=2, seed=1, mode=mode).images
        assert np.array_equal(a, b) == same, mode


def test_settings_are_in_the_config_and_defaults_follow_the_domain():
    eng = ENGINES[8]
    assert eng.config["strict"] == {"declip_grey": 8.0, "floor": 0.003, "dark_ink": False, "shrink_grey": 0.0}
    json.dumps(eng.config)
    assert strict_settings_for("mnist-x4", "mnist") == TUNED_STRICT["mnist-x4"]
    # with a de-clip estimator the amount is tuned beyond its estimate; a model tuned without one keeps its own
    assert strict_settings_for("mnist-x4", "mnist", declip=True) == TUNED_STRICT_DECLIP["mnist-x4"]
    assert strict_settings_for("mnist-x8", "mnist", declip=True) == TUNED_STRICT["mnist-x8"]
    assert strict_settings_for("my-digits", "mnist").dark_ink is False
    assert strict_settings_for("my-plates", "plates").dark_ink is True
    assert strict_settings_for("x", "") == StrictSettings()
    with pytest.raises(ValueError):
        StrictSettings(declip_grey=-1)
    with pytest.raises(ValueError):
        StrictSettings(floor=0)
    with pytest.raises(ValueError):
        StrictSettings(shrink_grey=-1)


def test_shipped_models_carry_their_tuned_settings():
    for name in TUNED_STRICT:
        try:
            eng = load_engine(name)
        except ValueError:  # not shipped in this checkout
            continue
        s = (TUNED_STRICT_DECLIP if eng.declip is not None else TUNED_STRICT)[name]
        assert eng.strict == s and eng.config["strict"] == s.to_dict()
        assert s.dark_ink == (eng.domain == "plates")
    assert load_engine("mnist-x4").declip is not None  # the shipped x4 carries its estimator


# ---- the diffusers engine (RGB) ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rgb_engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipes") / "ldm"
    tiny_ldm_pipeline().save_pretrained(str(folder), safe_serialization=True)
    return load_engine(f"diffusers:{folder}")


@pytest.mark.parametrize("mode", ["strict", "guided"])
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_rgb_strict_and_guided_samples_round_back(rgb_engine, mode, data):
    hr = np.stack([data.draw(hr_images(32)) for _ in range(3)], -1)[:, :, :]  # (32, 32, 3)
    lr = make_lr(np.moveaxis(hr, -1, 0), rgb_engine.scale)
    lr = np.moveaxis(lr, 0, -1)  # (8, 8, 3)
    bank = rgb_engine.sample_bank(lr, n=2, steps=2, seed=data.draw(st.integers(0, 100)), mode=mode)
    _assert_exact(rgb_engine, bank.images, lr)
    rep = rgb_engine.ensemble(bank.images, lr)
    assert rep.lr_psnr == EXACT_DB and rep.flow_consistency is None
    assert rgb_engine.config["strict"] == StrictSettings().to_dict()  # Euclidean: no domain to protect


def test_tuning_picks_the_best_projected_setting_with_its_shrink():
    """``tune-strict``'s choice over the de-clip x metric x shrink grid: the projected cell of highest SSIM (never the
    unprojected flow's reference column), its shrink in the settings; the table shows a shrink column only when
    the grid has one."""
    from sr_engine.eval.strict_tuning import EUCLID, FLOW, TuneCell, TuneResult

    res = TuneResult(model="m", images=2, samples=2, steps=2, dark_ink=True, seconds=0.0)
    for t, base in ((0.0, 0.90), (16.0, 0.95)):
        res.cells[(8.0, FLOW, t)] = TuneCell(base + 0.04, 1.0, float("nan"))
        res.cells[(8.0, EUCLID, t)] = TuneCell(base, 1.0, 1.0)
        res.cells[(8.0, "floor=0.003", t)] = TuneCell(base + 0.01, 1.0, 1.0)
    assert res.best() == StrictSettings(declip_grey=8.0, floor=0.003, dark_ink=True, shrink_grey=16.0)
    md = res.to_markdown()
    assert "| de-clip (grey) | shrink (grey) |" in md and "| 8 | 16 | 0.9900 / 1.00 / n/a |" in md
    assert md.endswith("floor 0.003, shrink 16 grey")
    plain = TuneResult(model="m", images=2, samples=2, steps=2, dark_ink=False, seconds=0.0,
                       cells={k: c for k, c in res.cells.items() if k[2] == 0.0})
    assert plain.best() == StrictSettings(declip_grey=8.0, floor=0.003, dark_ink=False)
    assert "shrink" not in plain.to_markdown()


def test_fidelity_budget_decodes_the_hr_images_own_z_and_y_back_to_it():
    """``tune-strict --budget``: the four ways of feeding the flow's inverse; with the HR image's own z and y the
    flow inverts exactly and the projection leaves the (consistent) image alone, so SSIM is about 1."""
    from sr_engine.eval.strict_tuning import BUDGET_CASES, fidelity_budget

    eng = ENGINES[4]
    rng = np.random.default_rng(0)
    hr = np.stack([_blocks(rng.choice([0, 255, -1], size=(2, 2)), LR_SIDE * 4, i) for i in range(3)])
    res = fidelity_budget(eng, hr, n=2, steps=1)
    assert list(res.rows) == list(BUDGET_CASES) and res.images == 3
    own_ssim, own_haze, own_flow = res.rows[BUDGET_CASES[-1]]
    assert own_flow > 0.999 and own_ssim > 0.99 and own_haze < 1.0
    assert all(0 < r[0] <= 1 for r in res.rows.values())
    assert "the HR image's own z and y" in res.to_markdown()
