"""``python -m sr_engine sample --model mnist-x4 --lr in.png --n 64 --steps 8 --out DIR``
``python -m sr_engine sample --model diffusers:/path/to/pipeline --lr photo.png --n 16 --steps 20 --mode guided
--scheduler dpmsolver --out DIR`` (a local diffusers SR pipeline; RGB in and out)

Writes DIR/sample_000.png ... (lossless PNG), DIR/grid.png (the bank enlarged with nearest-neighbour) and
DIR/bank.json (seeds, LR-PSNR, flow consistency, settings, model provenance).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .bank import MODES, load_engine
from .diffusers_engine import SCHEDULERS as DIFFUSERS_SCHEDULERS
from .kernel_diffusion import SCHEDULERS

# the flow engine's and the diffusers engine's schedulers; each engine refuses the ones it does not know
ALL_SCHEDULERS = tuple(dict.fromkeys(SCHEDULERS + DIFFUSERS_SCHEDULERS))


def bank_grid(images: np.ndarray, cols: int = 8, zoom: int = 4, pad: int = 2) -> Image.Image:
    """uint8 (n, H, W[, 3]) -> one PIL image of the bank, nearest-neighbour enlarged."""
    n, h, w = images.shape[:3]
    rows = -(-n // cols)
    rgb = images.ndim == 4
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad) + ((3,) if rgb else ()), 128, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    img = Image.fromarray(canvas)
    return img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)


def sample_main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sr_engine sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist-x4", help="a shipped model, a checkpoint path, or diffusers:/dir")
    p.add_argument("--lr", required=True, help="LR image (PNG/JPEG), read as grey or RGB as the model takes it")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default=None, choices=MODES)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--scheduler", default="ddim", choices=ALL_SCHEDULERS)
    p.add_argument("--timesteps", default=None, help="explicit comma-separated list, e.g. 999,600,300,100")
    p.add_argument("--start-step", type=int, default=None)
    p.add_argument("--max-lr-side", type=int, default=None, help="refuse larger LR images (engine default: 128)")
    g = p.add_argument_group("diffusers:/dir models only")
    g.add_argument("--prompt", default=None, help="text prompt, for pipelines that take one (may stay empty)")
    g.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance with a prompt")
    g.add_argument("--noise-level", type=int, default=None, help="noise augmentation of the LR (SD upscaler)")
    g.add_argument("--device", default=None, help="torch device, e.g. cuda (default cpu)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kwargs = {k: v for k, v in [("max_lr_side", a.max_lr_side)] if v is not None}
    pipeline_kwargs = {k: v for k, v in [("prompt", a.prompt), ("guidance_scale", a.guidance_scale),
                                         ("noise_level", a.noise_level), ("device", a.device)] if v is not None}
    if pipeline_kwargs and not a.model.startswith("diffusers:"):
        p.error(f"{', '.join(pipeline_kwargs)} apply to diffusers:/dir models only")
    eng = load_engine(a.model, **kwargs, **pipeline_kwargs)
    img = Image.open(a.lr)
    img = img.convert("L" if getattr(eng, "channels", 1) == 1 else "RGB")
    ts = [int(t) for t in a.timesteps.split(",")] if a.timesteps else None
    cpu0 = time.process_time()  # CPU seconds of the bank: with --threads 1, little moved by other processes
    bank = eng.sample_bank(np.asarray(img), n=a.n, steps=a.steps, seed=a.seed, mode=a.mode, tau=a.tau,
                           timesteps=ts, start_step=a.start_step, scheduler=a.scheduler, progress=True)
    cpu = time.process_time() - cpu0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(bank.images):
        Image.fromarray(im).save(out / f"sample_{i:03d}.png")
    bank_grid(bank.images).save(out / "grid.png")
    meta = {"model": bank.model, "mode": bank.mode, "steps": bank.steps, "scheduler": bank.scheduler,
            "seconds": round(bank.seconds, 4), "cpu_seconds": round(cpu, 4), "settings": bank.settings,
            "seeds": bank.seeds.tolist(),
            "lr_psnr": bank.lr_psnr.tolist(),
            "flow_consistency": None if bank.flow_consistency is None else bank.flow_consistency.tolist(),
            "engine": getattr(eng, "config", {})}
    (out / "bank.json").write_text(json.dumps(meta, indent=1))
    exact = float((bank.lr_psnr >= 100).mean())
    print(f"{len(bank)} samples in {bank.seconds:.2f} s ({cpu:.2f} s CPU) -> {out}; "
          f"LR-PSNR worst {bank.lr_psnr.min():.2f} dB, "
          f"median {np.median(bank.lr_psnr):.2f} dB, exact {100 * exact:.0f}%")
