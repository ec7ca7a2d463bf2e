"""A local diffusers SR pipeline as a bank source: tiny real LDMSuperResolutionPipeline and
StableDiffusionUpscalePipeline built from random weights (as diffusers' own fast tests do), saved with
save_pretrained to a temporary folder and loaded through ``load_engine("diffusers:...")``. Checks RGB banks,
consistency of strict and guided modes, seeds, ensembles, schedulers, odd LR sizes, and clear errors for bad
folders and pickled weights. No network: everything is built here, and loading is local-files-only."""

from __future__ import annotations

import importlib.util
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network at any point
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import smooth_hr, tiny_ldm_pipeline as _tiny_ldm, tiny_sd_upscale_pipeline as _tiny_sd_upscale
from sr_engine import Bank, DiffusersEngine, EnsembleReport, SREngine, load_engine
from sr_engine.engines.diffusers_engine import alpha_bar, output_for_x0, predicted_x0
from sr_engine.metrics import CONSISTENT_DB, EXACT_DB, downscale_255, lr_psnr, lr_psnr_batch

SCALE = 4
N, STEPS = 4, 2
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
PIPELINES = ["ldm", "sd-upscale"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    """Pipeline folders written by save_pretrained (safetensors); SD only where transformers is installed."""
    root = tmp_path_factory.mktemp("pipelines")
    _tiny_ldm().save_pretrained(root / "ldm", safe_serialization=True)
    out = {"ldm": str(root / "ldm")}
    if HAS_TRANSFORMERS:
        _tiny_sd_upscale(root / "tok").save_pretrained(root / "sd-upscale", safe_serialization=True)
        out["sd-upscale"] = str(root / "sd-upscale")
    return out


def _folder(folders, kind: str) -> str:
    if kind not in folders:
        pytest.skip("transformers is not installed (needed only for StableDiffusionUpscalePipeline)")
    return folders[kind]


_ENGINES: dict[str, DiffusersEngine] = {}


@pytest.fixture(params=PIPELINES)
def engine(request, folders) -> DiffusersEngine:
    kind = request.param
    if kind not in _ENGINES:
        _ENGINES[kind] = load_engine("diffusers:" + _folder(folders, kind))
    return _ENGINES[kind]


def _rgb_lr(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 (h, w, 3) LR image: D of a smooth RGB HR image."""
    hr = np.stack([smooth_hr(h * SCALE, w * SCALE, seed=seed + c) for c in range(3)], -1)
    return np.round(np.clip(downscale_255(hr, SCALE), 0, 255)).astype(np.uint8)


LR = _rgb_lr(8, 12)
_BANKS: dict[tuple, Bank] = {}


def _bank(eng: DiffusersEngine, mode: str) -> Bank:
    key = (eng.adapter.pipeline_class, mode)
    if key not in _BANKS:
        _BANKS[key] = eng.sample_bank(LR, n=N, steps=STEPS, seed=3, mode=mode)
    return _BANKS[key]


def _assert_consistent(bank: Bank, lr: np.ndarray) -> None:
    np.testing.assert_array_equal(bank.lr_psnr, lr_psnr_batch(bank.images, lr, SCALE))
    assert all(v == EXACT_DB or v >= CONSISTENT_DB for v in bank.lr_psnr), bank.lr_psnr


# ---- the contract ----------------------------------------------------------------------------------------
def test_engine_satisfies_the_protocol(engine):
    assert isinstance(engine, SREngine) and isinstance(engine, DiffusersEngine)
    assert engine.lr_shape is None and engine.channels == 3 and engine.max_lr_side == 128
    assert set(engine.schedulers) == {"ddim", "dpmsolver", "euler"} and isinstance(engine.option_names, tuple)
    assert engine.scale == SCALE and engine.channels == 3
    assert engine.modes == ("strict", "guided", "free")
    cfg = engine.config
    assert cfg["engine"] == "diffusers" and cfg["pipeline_class"] in ("LDMSuperResolutionPipeline",
                                                                      "StableDiffusionUpscalePipeline")
    assert cfg["weights_sha256"] and all(p.endswith(".safetensors") and len(h) == 64
                                         for p, h in cfg["weights_sha256"].items())
    assert "unet/diffusion_pytorch_model.safetensors" in cfg["weights_sha256"]
    assert len(cfg["checkpoint_sha256"]) == 64 and cfg["folder"].endswith(engine.name)
    json.dumps(cfg)  # provenance is plain JSON


@pytest.mark.parametrize("mode", ["strict", "guided"])
def test_strict_and_guided_banks_are_consistent(engine, mode):
    bank = _bank(engine, mode)
    assert bank.images.shape == (N, 8 * SCALE, 12 * SCALE, 3) and bank.images.dtype == np.uint8
    assert bank.mode == mode and bank.steps == STEPS and bank.scheduler == "ddim" and bank.model == engine.name
    assert bank.flow_consistency is None  # no flow in this engine
    assert bank.projection_residual.shape == (N,) and (bank.projection_residual <= engine.projection_tol).all()
    _assert_consistent(bank, LR)
    assert len({im.tobytes() for im in bank.images}) == N  # every sample its own draw


def test_free_mode_is_reported_honestly(engine):
    bank = _bank(engine, "free")
    assert bank.images.shape == (N, 8 * SCALE, 12 * SCALE, 3) and bank.projection_residual is None
    # the figures are the metric's own; no bound: an untrained pipeline need not agree with the LR image
    np.testing.assert_array_equal(bank.lr_psnr, lr_psnr_batch(bank.images, LR, SCALE))
    assert np.isfinite(bank.lr_psnr).all()


def test_guided_differs_from_strict(engine):
    """Guidance shapes the samples during sampling, not only at the end."""
    assert not np.array_equal(_bank(engine, "guided").images, _bank(engine, "strict").images)


@pytest.mark.parametrize("mode", ["strict", "guided"])
def test_seeds_reproduce_samples(engine, mode):
    bank = _bank(engine, mode)
    assert bank.seeds[0] == 3 and len(set(bank.seeds.tolist())) == N
    for i in (0, 3):
        one = engine.sample_bank(LR, n=1, steps=STEPS, seed=int(bank.seeds[i]), mode=mode)
        diff = np.abs(one.images[0].astype(int) - bank.images[i].astype(int)).max()
        assert diff <= 1, f"sample {i} differs by {diff} grey levels"


def test_ensemble_is_consistent_and_has_no_flow_check(engine):
    bank = _bank(engine, "guided")
    rep = engine.ensemble(bank.images[[0, 1, 3]], LR)
    assert isinstance(rep, EnsembleReport) and rep.n == 3 and rep.image.shape == bank.images.shape[1:]
    assert rep.lr_psnr >= CONSISTENT_DB and rep.lr_psnr == lr_psnr(rep.image, LR, SCALE)
    assert rep.flow_consistency is None
    weighted = engine.ensemble(bank.images, LR, weights=[3, 0, 1, 1])
    assert weighted.lr_psnr >= CONSISTENT_DB and weighted.flow_consistency is None


@pytest.mark.parametrize("mode", ["flow", "prior", "bogus"])
def test_unsupported_mode_raises(engine, mode):
    with pytest.raises(ValueError, match="mode"):
        engine.sample_bank(LR, n=1, steps=1, mode=mode)


@pytest.mark.parametrize("index", [0, 3])  # the noisiest step and the last one
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver", "euler", "dpmsolver-karras", "euler-karras"])
def test_corrected_x0_reaches_the_scheduler(scheduler, prediction_type, index):
    """The guided step hands the corrected x0 back as a model output; every scheduler must read that output as
    predicting exactly the corrected x0 (Euler through its sigma parameterisation)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cls = {"ddim": DDIMScheduler, "dpmsolver": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}
    family, _, karras = scheduler.partition("-")
    extra = {"clip_sample": False} if family == "ddim" else {"use_karras_sigmas": bool(karras)}
    sched = cls[family](prediction_type=prediction_type, **extra)
    sched.set_timesteps(4)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn((2, 3, 4, 4), generator=gen) * sched.init_noise_sigma
    x0 = torch.randn((2, 3, 4, 4), generator=gen)
    t = sched.timesteps[index]
    x_in = sched.scale_model_input(latents, t)
    abar = alpha_bar(sched, t)
    out = output_for_x0(x0, x_in, abar, prediction_type)
    torch.testing.assert_close(predicted_x0(out, x_in, abar, prediction_type), x0, atol=1e-4, rtol=1e-4)
    res = sched.step(out, t, latents)
    seen = sched.model_outputs[-1] if family == "dpmsolver" else res.pred_original_sample
    torch.testing.assert_close(seen, x0, atol=1e-3, rtol=1e-3)  # float32, divided by sqrt(1 - abar) ~ 0.01


# ---- schedulers, timesteps, sizes ------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler", ["dpmsolver", "euler"])
def test_other_schedulers(engine, scheduler):
    bank = engine.sample_bank(LR, n=2, steps=3, seed=1, mode="guided", scheduler=scheduler)
    assert bank.scheduler == scheduler and bank.images.shape == (2, 32, 48, 3)
    _assert_consistent(bank, LR)


@pytest.mark.parametrize("scheduler", ["dpmsolver", "euler"])
def test_explicit_timesteps_and_start_step(engine, scheduler):
    bank = engine.sample_bank(LR, n=2, seed=1, scheduler=scheduler, timesteps=[900, 500, 100], start_step=1)
    assert bank.steps == 3 and bank.settings["timesteps"] == [900, 500, 100] and bank.settings["start_step"] == 1
    _assert_consistent(bank, LR)


@pytest.mark.parametrize("kwargs", [dict(scheduler="ddim", timesteps=[900, 100]),  # DDIM assumes even spacing
                                    dict(scheduler="dpmsolver", timesteps=[100, 900]),
                                    dict(scheduler="euler", timesteps=[1000, 10]),
                                    dict(scheduler="pndm"), dict(steps=0), dict(start_step=5), dict(n=0),
                                    dict(tau=0.0)])
def test_bad_sampling_settings_raise(engine, kwargs):
    args = dict(n=1, steps=2) | kwargs
    with pytest.raises(ValueError):
        engine.sample_bank(LR, **args)


@pytest.mark.parametrize("size", [(7, 9), (3, 5), (1, 6)])
def test_odd_lr_sizes_are_padded_not_resized(engine, size):
    lr = _rgb_lr(*size, seed=5)
    bank = engine.sample_bank(lr, n=2, steps=STEPS, seed=0, mode="strict")
    assert bank.images.shape == (2, size[0] * SCALE, size[1] * SCALE, 3)
    _assert_consistent(bank, lr)


def test_pil_input_and_bad_inputs(engine):
    bank = engine.sample_bank(Image.fromarray(LR), n=1, steps=1, seed=3)
    assert bank.images.shape == (1, 32, 48, 3)
    with pytest.raises(ValueError, match="3-channel"):
        engine.sample_bank(LR[..., 0], n=1, steps=1)  # a grey image for an RGB model
    with pytest.raises(ValueError, match="larger than the limit"):
        engine.sample_bank(np.zeros((200, 8, 3), np.uint8), n=1, steps=1)


def test_size_limit_and_options_are_configurable(folders):
    eng = load_engine("diffusers:" + folders["ldm"], max_lr_side=10, batch_size=3, name="my-ldm", scale=SCALE)
    assert eng.max_lr_side == 10 and eng.batch_size == 3 and eng.name == "my-ldm"
    with pytest.raises(ValueError, match="larger than the limit"):
        eng.sample_bank(LR, n=1, steps=1)  # 8x12 > 10
    with pytest.raises(ValueError, match="not x2"):
        load_engine("diffusers:" + folders["ldm"], scale=2)
    with pytest.raises(ValueError, match="prompt"):
        load_engine("diffusers:" + folders["ldm"], prompt="a cat")  # the LDM upscaler takes no prompt


def test_sd_upscaler_with_a_prompt(folders):
    eng = load_engine("diffusers:" + _folder(folders, "sd-upscale"), prompt="a red car", guidance_scale=3.0,
                      noise_level=30)
    assert eng.adapter.cfg and eng.config["options"] == {"prompt": "a red car", "guidance_scale": 3.0,
                                                         "noise_level": 30}
    bank = eng.sample_bank(LR, n=2, steps=STEPS, seed=0, mode="guided")
    assert bank.settings["prompt"] == "a red car"
    _assert_consistent(bank, LR)
    with pytest.raises(ValueError, match="noise_level"):
        load_engine("diffusers:" + folders["sd-upscale"], noise_level=1000)


# ---- what is refused -------------------------------------------------------------------------------------
def test_bad_folders_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        load_engine("diffusers:")
    with pytest.raises(ValueError, match="does not exist"):
        load_engine("diffusers:" + str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="model_index.json"):
        load_engine("diffusers:" + str(tmp_path / "empty"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_engine("diffusers:" + str(tmp_path / "broken"))


def test_a_pipeline_that_is_not_super_resolution_is_refused(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(block_out_channels=(8, 16), layers_per_block=1, in_channels=3, out_channels=3,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=8)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).save_pretrained(tmp_path / "ddpm")
    with pytest.raises(ValueError, match="DDPMPipeline.*not an image-conditioned super-resolution"):
        load_engine("diffusers:" + str(tmp_path / "ddpm"))


def test_pickled_weights_are_refused(tmp_path):
    _tiny_ldm().save_pretrained(tmp_path / "pickled", safe_serialization=False)
    assert list((tmp_path / "pickled").rglob("*.bin")) and not list((tmp_path / "pickled").rglob("*.safetensors"))
    with pytest.raises(ValueError, match="pickled weights"):
        load_engine("diffusers:" + str(tmp_path / "pickled"))


# ---- the command line ------------------------------------------------------------------------------------
def test_cli_samples_an_rgb_png(folders, tmp_path):
    from sr_engine.cli import sample_main

    Image.fromarray(LR).save(tmp_path / "lr.png")
    out = tmp_path / "out"
    sample_main(["--model", "diffusers:" + folders["ldm"], "--lr", str(tmp_path / "lr.png"), "--n", "2",
                 "--steps", "2", "--mode", "guided", "--scheduler", "euler", "--threads", "1", "--out", str(out)])
    meta = json.loads((out / "bank.json").read_text())
    assert meta["flow_consistency"] is None and meta["engine"]["pipeline_class"] == "LDMSuperResolutionPipeline"
    assert min(meta["lr_psnr"]) >= CONSISTENT_DB
    img = np.asarray(Image.open(out / "sample_001.png"))
    assert img.shape == (32, 48, 3)
    assert lr_psnr(img, LR, SCALE) == meta["lr_psnr"][1]
    assert torch.get_num_threads() == 1
