"""The benchmark's baselines, trained on the training rows only, and its simulated raters.

    python -m sr_engine benchmark train-baselines            # data/baselines/ (resumes from runs/baselines/)
    python -m sr_engine benchmark train-baselines --quick    # tiny ones, into results/quick/baselines

- ``regression``: a VDSR/EDSR-style residual CNN on the bicubic-upsampled LR image, trained with L2 against HR
  (the one-answer baseline).
- ``pixel-ddpm``: an SR3-style conditional DDPM over the HR pixels given the bicubic-upsampled LR image: a
  diffusers ``UNet2DModel`` (x_t and the condition concatenated) with the kernel DDPM's chain (cosine schedule,
  v-prediction, trailing spacing) and UNet widths, trained with diffusers' ``DDPMScheduler``.
- ``raters/rater-<i>.pt``: digit classifiers on training half 0 (``row % 500 % 2 == 0``), seeds 0, 1, ...;
  ``raters/judge.pt``: one on half 1. Both halves lie inside the training rows.

Each network's training resumes from ``<work_dir>/x<s>/<name>.pt`` (weights, optimiser, EMA, step, config) and
exports ``<export_dir>/x<s>/<name>.pt`` (config + weights) when it finishes.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from ..data import load_mnist, mnist_canvas
from ..eval.judge import load_classifier, train_classifier
from ..models.kernel_diffusion import KernelDDPMConfig, make_scheduler
from ..models.regression import BASELINE_FORMAT, RegressionNet, load_baseline_file, load_regression_file
from ..train import PRESETS, HRBatches, PlateBatches, lr_at, lr_of, resume, save_checkpoint
from .config import BaselineConfig


# ---- networks ----------------------------------------------------------------------------------------------
def build_pixel_unet(cfg: KernelDDPMConfig):
    """A diffusers UNet over (x_t, condition): 2 channels in, the v-prediction of x out."""
    n = len(cfg.block_out_channels)
    return UNet2DModel(sample_size=None, in_channels=2, out_channels=1,
                       block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
                       down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
                       norm_num_groups=cfg.norm_num_groups)


def bicubic_up_t(y: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 1, h, w) on [0, 1] -> (B, 1, H, W), rounded to grey levels: the tensor twin of
    :func:`sr_engine.degradation.bicubic_up`."""
    up = F.interpolate(y.float(), scale_factor=scale, mode="bicubic", align_corners=False)
    return torch.round(up.clamp(0, 1) * 255) / 255


def pixel_chain_config(cfg: BaselineConfig, scale: int) -> KernelDDPMConfig:
    return KernelDDPMConfig.from_dict({"channels": 1, "scale": scale, **cfg.ddpm})


# ---- training ----------------------------------------------------------------------------------------------
def _paths(cfg: BaselineConfig, scale: int, name: str) -> tuple[Path, Path]:
    return Path(cfg.work_dir) / f"x{scale}" / f"{name}.pt", cfg.export_path() / f"x{scale}" / f"{name}.pt"


def _schedule(cfg: BaselineConfig, steps: int) -> SimpleNamespace:
    return SimpleNamespace(lr=cfg.lr, warmup=cfg.warmup, steps=steps)


def _batches(cfg: BaselineConfig, scale: int, domain: str, seed: int):
    """HR training batches (uint8 values as float, on the CPU): MNIST digits padded to the scale's canvas, or
    crops of the training plates exactly as the plates engine was trained (``sr_engine.train.PlateBatches``)."""
    if domain == "plates":
        pr = PRESETS[f"plates-x{scale}"]
        return PlateBatches(cfg.plates_train or pr["n_train"], pr["render_seed"], pr["crop"], cfg.batch_size, seed,
                            cache_dir=Path(cfg.work_dir).parent)
    if domain != "mnist":
        raise ValueError(f"unknown domain {domain!r}; expected 'mnist' or 'plates'")
    return HRBatches(mnist_canvas(scale), cfg.batch_size, cfg.shift, seed)


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def _train_info(cfg: BaselineConfig, steps: int, seconds: float) -> dict:
    dev = torch.device(cfg.device)
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return {"steps": steps, "seconds": round(seconds, 1), "rows": "train", "device": where,
            "torch_threads": torch.get_num_threads(), "baseline_config": cfg.to_dict()}


def _trained_seconds(state_path: Path, seconds: float) -> float:
    """Training time as the last resumable checkpoint records it (``seconds``, what resuming found, if none)."""
    if not state_path.exists():
        return seconds
    return torch.load(state_path, map_location="cpu", weights_only=True)["seconds"]


def baseline_name(kind: str, domain: str) -> str:
    """The file stem of a baseline network: ``regression``, ``pixel-ddpm``, ``plates-regression``, ..."""
    return kind if domain == "mnist" else f"{domain}-{kind}"


def train_regression(cfg: BaselineConfig, scale: int, domain: str = "mnist") -> Path:
    """Train (or resume) the L2 regression net for one scale; returns the exported weights' path. ``domain``
    "plates" trains on crops of the training plates (``sr_engine.train.PlateBatches``, as the plates-x4 engine)
    and writes ``plates-regression.pt``."""
    state_path, out = _paths(cfg, scale, baseline_name("regression", domain))
    torch.manual_seed(cfg.seed)
    net = RegressionNet(cfg.reg_width, cfg.reg_blocks)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step, seconds = resume(state_path, state=net, opt_state=opt)
    batches = _batches(cfg, scale, domain, cfg.seed + step)
    dev = torch.device(cfg.device)
    net.to(dev).train()
    t0 = time.time()
    bar = tqdm(range(step, cfg.reg_steps), initial=step, total=cfg.reg_steps,
               desc=f"{domain} regression x{scale}", mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, _schedule(cfg, cfg.reg_steps))
        x255 = batches.next()
        up = bicubic_up_t(lr_of(x255, scale, "bicubic"), scale).to(dev)
        loss = F.mse_loss(net(up), x255.to(dev) / 255.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.reg_steps:
            save_checkpoint(state_path, {"state": net.state_dict(), "opt_state": opt.state_dict(), "step": step + 1,
                               "seconds": seconds + time.time() - t0, "baseline_config": cfg.to_dict()})
            bar.set_postfix(loss=f"{loss.item():.5f}")
    save_checkpoint(out, {"format": BASELINE_FORMAT, "kind": "regression", "scale": scale, "domain": domain,
                "config": {"width": cfg.reg_width, "blocks": cfg.reg_blocks}, "state": _cpu(net.state_dict()),
                "train_info": _train_info(cfg, cfg.reg_steps, _trained_seconds(state_path, seconds))})
    return out


def train_pixel_ddpm(cfg: BaselineConfig, scale: int, domain: str = "mnist") -> Path:
    """Train (or resume) the SR3-style pixel DDPM for one scale; exports the EMA weights. ``domain`` "plates"
    trains on crops of the training plates and writes ``plates-pixel-ddpm.pt``. Noise and timesteps are drawn on
    the CPU, so a run on ``cfg.device`` "cuda" sees the same draws as one on the CPU."""
    state_path, out = _paths(cfg, scale, baseline_name("pixel-ddpm", domain))
    dcfg = pixel_chain_config(cfg, scale)
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    unet = build_pixel_unet(dcfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    unet.to(dev)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    sched = make_scheduler(dcfg, "ddpm")
    step, seconds = resume(state_path, state=unet, opt_state=opt, ema_state=ema)
    ema.to(dev)
    batches = _batches(cfg, scale, domain, cfg.seed + 7 + step)
    gen = torch.Generator().manual_seed(cfg.seed + 11 + step)
    unet.train()
    t0 = time.time()
    bar = tqdm(range(step, cfg.ddpm_steps), initial=step, total=cfg.ddpm_steps, desc=f"pixel ddpm x{scale}",
               mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, _schedule(cfg, cfg.ddpm_steps))
        x255 = batches.next()
        cond = (bicubic_up_t(lr_of(x255, scale, "bicubic"), scale) * 2 - 1).to(dev)
        x0 = (x255 / 127.5 - 1).to(dev)  # [-1, 1]
        noise = torch.randn(x0.shape, generator=gen).to(dev)
        t = torch.randint(0, dcfg.num_train_timesteps, (x0.shape[0],), generator=gen).to(dev)
        x_t = sched.add_noise(x0, noise, t)  # q_sample (Ho et al. eq. 4)
        target = noise if dcfg.prediction_type == "epsilon" else sched.get_velocity(x0, noise, t)
        loss = F.mse_loss(unet(torch.cat([x_t, cond], 1), t).sample, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.ddpm_steps:
            save_checkpoint(state_path, {"state": unet.state_dict(), "opt_state": opt.state_dict(),
                               "ema_state": ema.state_dict(), "step": step + 1,
                               "seconds": seconds + time.time() - t0, "baseline_config": cfg.to_dict()})
            bar.set_postfix(loss=f"{loss.item():.4f}")
    shadow = build_pixel_unet(dcfg)
    shadow.load_state_dict(_cpu(unet.state_dict()))
    ema.to("cpu")
    ema.copy_to(shadow.parameters())
    save_checkpoint(out, {"format": BASELINE_FORMAT, "kind": "pixel-ddpm", "scale": scale, "domain": domain,
                "config": dcfg.to_dict(), "state": shadow.state_dict(),
                "train_info": _train_info(cfg, cfg.ddpm_steps, _trained_seconds(state_path, seconds))})
    return out


def train_rater(cfg: BaselineConfig, half: int, seed: int, out: Path) -> Path:
    """A digit classifier on training half ``half`` (``row % 500 % 2 == half``; never an evaluation row)."""
    digits = load_mnist("train")
    keep = np.flatnonzero(digits.rows % 500 % 2 == half)
    if cfg.classifier_rows:
        keep = np.random.default_rng(seed).permutation(keep)[: cfg.classifier_rows]  # every digit represented
    model = train_classifier(digits.images[keep], digits.labels[keep], seed=seed, epochs=cfg.classifier_epochs)
    save_checkpoint(out, {"state": model.state_dict(), "rows": f"half{half}", "seed": seed,
                          "epochs": cfg.classifier_epochs,
                "n_train": int(len(keep))})
    return out


def train_baselines(cfg: BaselineConfig, parts=("regression", "pixel-ddpm", "raters"),
                    domain: str = "mnist") -> list[Path]:
    """Train whatever of ``parts`` is missing from ``cfg.export_path()`` or trained for fewer steps than ``cfg``
    asks (it resumes from its state in ``cfg.work_dir``); finished files are kept (delete one to retrain).
    ``domain`` "plates": the plates nets at x4 (their raters and judge are the plate readers of
    ``sr_engine.eval.reader``, trained by ``python -m sr_engine train --stage reader``)."""
    unknown = set(parts) - {"regression", "pixel-ddpm", "raters"}
    if unknown:
        raise ValueError(f"unknown baseline parts {sorted(unknown)}")
    done = []
    nets = [(n, fn, steps) for n, fn, steps in (("regression", train_regression, cfg.reg_steps),
                                                  ("pixel-ddpm", train_pixel_ddpm, cfg.ddpm_steps)) if n in parts]
    for scale in (cfg.scales if domain == "mnist" else (4,)):
        for name, fn, steps in nets:
            out = _paths(cfg, scale, baseline_name(name, domain))[1]
            finished = out.exists() and torch.load(out, map_location="cpu",
                                                   weights_only=True)["train_info"]["steps"] >= steps
            done.append(out if finished else fn(cfg, scale, domain))  # an unfinished one resumes from its state
    if "raters" not in parts or domain != "mnist":
        return done
    raters = cfg.export_path() / "raters"
    for i in range(cfg.raters):
        out = raters / f"rater-{i}.pt"
        done.append(out if out.exists() else train_rater(cfg, 0, i, out))
    judge = raters / "judge.pt"
    done.append(judge if judge.exists() else train_rater(cfg, 1, 1000, judge))
    return done


# ---- loading -----------------------------------------------------------------------------------------------
def load_regression(root: Path, scale: int, domain: str = "mnist") -> RegressionNet:
    return load_regression_file(Path(root) / f"x{scale}" / f"{baseline_name('regression', domain)}.pt")


def load_pixel_ddpm(root: Path, scale: int, domain: str = "mnist"):
    """(unet, KernelDDPMConfig of its chain)."""
    st = load_baseline_file(Path(root) / f"x{scale}" / f"{baseline_name('pixel-ddpm', domain)}.pt", "pixel-ddpm")
    dcfg = KernelDDPMConfig.from_dict(st["config"])
    unet = build_pixel_unet(dcfg)
    unet.load_state_dict(st["state"])
    return unet.eval().requires_grad_(False), dcfg


def load_raters(root: Path):
    """(list of rater classifiers, judge)."""
    d = Path(root) / "raters"
    paths = sorted(d.glob("rater-*.pt"))
    if not paths or not (d / "judge.pt").is_file():
        raise FileNotFoundError(f"simulated raters not found under {d}; run `python -m sr_engine benchmark "
                                "train-baselines`")
    return [load_classifier(p) for p in paths], load_classifier(d / "judge.pt")
