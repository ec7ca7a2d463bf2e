"""Shared test setup: one torch thread (the machine is small and busy), the package importable from the
repository root, and small helpers used by several test modules."""

from __future__ import annotations

import json
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(1)


def randomize_last_layers(module: torch.nn.Module, seed: int, std: float = 0.05) -> None:
    """Give the zero-initialised last conv of every affine coupling random weights, so that a flow is no
    longer a plain Haar transform (otherwise invertibility and log-det tests would be nearly trivial)."""
    from sr_engine.models.flow import AffineCoupling

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, AffineCoupling):
                last = m.subnet[-1]
                last.weight.copy_(torch.randn(last.weight.shape, generator=gen, dtype=last.weight.dtype) * std)
                last.bias.copy_(torch.randn(last.bias.shape, generator=gen, dtype=last.bias.dtype) * std)


def smooth_hr(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A digit-like float64 HR image (H, W) on [0, 1]: a bright ring plus a stroke, with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    r = np.hypot((yy - cy) / max(h / 3, 1), (xx - cx) / max(w / 3, 1))
    img = np.exp(-((r - 1.0) ** 2) / 0.08) + 0.8 * np.exp(-((xx - cx - (yy - cy) * 0.3) ** 2) / 2.0)
    img = img + 0.05 * rng.standard_normal((h, w))
    return np.clip(img / img.max(), 0, 1)


# ---- the annotation store (issue 3): a tiny real engine and throwaway databases ------------------------------
TINY_SCALE = 4


def tiny_flow_engine(seed: int = 0, name: str = "tiny-x4", cls=None, **kwargs):
    """A real, untrained FlowEngine at a tiny config (x4, grey): strict mode still makes every sample exactly
    consistent, which is all the store's tests need. ``cls`` may be a FlowEngine subclass."""
    from sr_engine import FlowEngine
    from sr_engine.models.flow import FlowConfig, PseudoInverseFlow
    from sr_engine.models.kernel_diffusion import KernelDDPMConfig, build_unet

    torch.manual_seed(seed)
    flow = PseudoInverseFlow(FlowConfig(scale=TINY_SCALE, channels=1, hr_size=(16, 16), hidden=8,
                                        blocks_per_level=1))
    randomize_last_layers(flow, seed=seed + 100, std=0.02)
    cfg = KernelDDPMConfig(channels=1, scale=TINY_SCALE, block_out_channels=(8, 16), layers_per_block=1,
                           norm_num_groups=4)
    return (cls or FlowEngine)(name, flow, build_unet(cfg), cfg, **kwargs)


def make_store(url: str):
    """(engine, session factory) of a fresh database with the full schema."""
    from db.engine import make_engine, make_session_factory
    from db.migrations import create_schema

    engine = make_engine(url)
    create_schema(engine)
    return engine, make_session_factory(engine)


def wait_for_banks(client, pid: int, n: int, worker, timeout: float = 60.0) -> str:
    """Poll the app's /bank_progress until ``n`` of ``n`` banks are complete and the worker is idle; the last
    progress text (the caller asserts on it)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        progress = client.predict(pid, api_name="/bank_progress")
        if (f"{n} of {n} banks complete" in progress and worker.idle()) or time.monotonic() > deadline:
            return progress
        time.sleep(0.5)


def tiny_lr_images(count: int, size: tuple[int, int] = (4, 4), seed: int = 0) -> list[np.ndarray]:
    """Distinct uint8 LR images (h, w) made by downscaling smooth HR images."""
    from sr_engine.metrics import downscale_255

    out = []
    for i in range(count):
        hr = smooth_hr(size[0] * TINY_SCALE, size[1] * TINY_SCALE, seed=seed + i)
        out.append(np.round(np.clip(downscale_255(hr, TINY_SCALE), 0, 255)).astype(np.uint8))
    return out


def seeded_project(factory, engine, n_images: int = 3, name: str = "p", gold: int = 0, **settings) -> int:
    """A project for ``engine`` with ``n_images`` tiny LR images (the first ``gold`` of them gold items labelled
    "g<i>") and complete banks (n=8, steps=2 unless given); returns the project id."""
    from annotation.banks import run_bank_jobs
    from annotation.images import import_arrays
    from annotation.projects import create_project, settings_for_engine
    from db.engine import session_scope

    opts = dict(bank_size=8, k_picks=2, raters_per_image=3, ensemble_size=2, steps=2)
    opts.update(settings)
    with session_scope(factory) as s:
        pid = create_project(s, settings_for_engine(engine, name, **opts)).id
        imgs = tiny_lr_images(n_images, seed=sum(map(ord, name)))
        import_arrays(s, pid, imgs, [f"img-{i}.png" for i in range(n_images)],
                      labels=[f"g{i}" if i < gold else None for i in range(n_images)],
                      gold=[i < gold for i in range(n_images)])
    report = run_bank_jobs(factory, engine, pid)
    assert not report.failed and len(report.completed) == n_images
    return pid


# ---- diffusers pipelines (issue 8): tiny, random, saved locally; no network -------------------------------
def tiny_ldm_pipeline():
    """A tiny x4 LDMSuperResolutionPipeline from random weights (seeded), as diffusers' own fast tests build it."""
    from diffusers import DDIMScheduler, UNet2DModel, VQModel
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution import (
        LDMSuperResolutionPipeline,
    )

    torch.manual_seed(0)
    unet = UNet2DModel(block_out_channels=(16, 32), layers_per_block=1, in_channels=6, out_channels=3,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, attention_head_dim=8)
    vq = VQModel(block_out_channels=[8, 16, 16], in_channels=3, out_channels=3, layers_per_block=1,
                 down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                 latent_channels=3, norm_num_groups=8, num_vq_embeddings=32)  # three blocks: x4
    return LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler())


def tiny_clip_tokenizer(folder):
    """A CLIP tokenizer from a small vocabulary the test writes (characters only, no merges)."""
    from transformers import CLIPTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz")
    vocab = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=16)


def tiny_sd_upscale_pipeline(tok_dir):
    """A tiny x4 StableDiffusionUpscalePipeline from random weights; its tokenizer's files are written to
    ``tok_dir`` (needs transformers)."""
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 16, 32), layers_per_block=1, sample_size=8, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, use_linear_projection=True, only_cross_attention=(True, True, False),
        num_class_embeds=100, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=[8, 16, 16], in_channels=3, out_channels=3, layers_per_block=1,
                        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                        latent_channels=4, norm_num_groups=8, scaling_factor=0.08333)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=64, max_position_embeddings=16, hidden_act="gelu",
        projection_dim=32))
    return StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tiny_clip_tokenizer(tok_dir), unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350)


# ---- the app, in-process on a free port --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(data: Path, admin_password: str, accounts: dict[str, tuple[str, str]], *, engine=None,
              n_images: int = 2, project: str = "app", **create_kwargs):
    """(base url, context, project id) of the app that ``app.create_app`` builds on ``data``, served on a free
    port with a tiny engine (or ``engine``), one seeded project and ``accounts`` (name -> (role, password))."""
    import app as app_module
    from annotation.accounts import create_rater
    from db.engine import session_scope
    from ui import EngineRegistry

    engine = engine or tiny_flow_engine()
    blocks, ctx, launch = app_module.create_app(None, data, admin_password=admin_password,
                                                engines=EngineRegistry({engine.name: engine}), demo=False,
                                                log=lambda _m: None, **create_kwargs)
    pid = seeded_project(ctx.factory, engine, n_images=n_images, name=project)
    with session_scope(ctx.factory) as s:
        for name, (role, password) in accounts.items():
            create_rater(s, name, role, password)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch)
    try:
        yield f"http://127.0.0.1:{port}/", ctx, pid
    finally:
        blocks.close()
        ctx.worker.stop()
