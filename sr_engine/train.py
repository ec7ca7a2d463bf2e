"""Training of the shipped models, on the training rows only.

    python -m sr_engine train --model mnist-x4 --stage flow --steps 6000
    python -m sr_engine train --model mnist-x4 --stage ddpm --steps 20000   # exports data/checkpoints/mnist-x4.pt
    python -m sr_engine train --stage classifier                           # data/classifiers/mnist-cnn.pt
    python -m sr_engine train --model plates-x4 --stage average --average a.pt,b.pt --export-dir DIR  # weight mean

Stages resume from ``runs/<model>/<stage>.pt`` (weights, optimiser, EMA, step, config), written every
``--ckpt-every`` steps; the ddpm stage exports the engine checkpoint at each of them. Seeds are fixed.
The command is in :mod:`sr_engine.cli`; this module is the library it calls.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from .config import ConfigMixin
from .data import data_dir, load_mnist, mnist_canvas
from .degradation import get_degradation
from .engines.base import sha256_file
from .engines.registry import CHECKPOINT_FORMAT
from .eval.judge import train_classifier
from .eval.reader import save_reader, train_reader
from .eval.strict_tuning import tuning_rows
from .models.declip import DeclipConfig, DeclipNet, clipped_mask, declip_loss
from .models.flow import FlowConfig, PseudoInverseFlow, grid_to_zs, zs_to_grid
from .models.kernel_diffusion import KernelDDPMConfig, build_unet, make_scheduler, training_loss
from .plates import HR_SHAPE, render_plates

log = logging.getLogger(__name__)

# the shipped settings: name -> scale, domain, HR size the engine samples at, training crop, LR input shape
# (None: any width), and for plates the number of training renders and their seed
def _mnist_preset(scale: int) -> dict:
    side = mnist_canvas(scale)  # the digits' HR canvas at this scale (x4: 28, x8: 32)
    return {"scale": scale, "domain": "mnist", "hr_size": (side, side), "lr_shape": (side // scale, side // scale)}


PRESETS: dict[str, dict] = {
    "mnist-x4": _mnist_preset(4),
    "mnist-x8": _mnist_preset(8),
    "plates-x4": {"scale": 4, "domain": "plates", "hr_size": HR_SHAPE, "crop": (32, 64), "lr_shape": (8, None),
                  "n_train": 24000, "render_seed": 1},
}


@dataclass
class TrainConfig(ConfigMixin):
    model: str = "mnist-x4"  # a PRESETS name
    stage: str = "flow"  # flow | ddpm
    steps: int = 6000  # optimiser steps of this stage (a resumed run continues up to it)
    batch_size: int = 64  # images per step
    lr: float = 5e-4  # peak learning rate (linear warm-up, cosine decay to 5%)
    warmup: int = 200  # warm-up steps
    seed: int = 0  # data order, dequantisation, noise
    ckpt_every: int = 500  # steps between resumable checkpoints
    ema_decay: float = 0.999  # EMA of the UNet weights (ddpm stage); the EMA weights ship
    shift: int = 1  # random translation of the HR digits by up to this many pixels (augmentation)
    threads: int = 1  # torch CPU threads
    work_dir: str = "runs"  # resumable state
    export_dir: str = ""  # where the ddpm stage writes <model>.pt; "" = data/checkpoints
    init_from: str = ""  # ddpm stage: an engine checkpoint whose flow and UNet (EMA) weights it continues from;
    # declip stage: the engine checkpoint whose flow it learns the input of (written again with the estimator)
    pixel_loss: float = 0.0  # ddpm stage: weight of the loss measured in pixels through the flow (0: z only)
    flat_weight: float = 0.0  # ddpm stage: the pixel loss counts 1 + this on the HR image's flat ground (0: off)
    flow: dict = field(default_factory=dict)  # FlowConfig overrides
    ddpm: dict = field(default_factory=dict)  # KernelDDPMConfig overrides
    declip: dict = field(default_factory=dict)  # DeclipConfig overrides


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate at ``step``: linear warm-up over ``cfg.warmup`` steps, then cosine decay to 5% of
    ``cfg.lr`` at ``cfg.steps`` (any object with ``lr``, ``warmup`` and ``steps`` serves)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


class HRBatches:
    """Endless shuffled batches of HR training digits: (B, 1, H, W) uint8-valued float tensors, randomly
    translated by up to ``shift`` pixels (the background is 0, so a roll is a shift)."""

    def __init__(self, pad_to: int, batch_size: int, shift: int, seed: int, exclude: np.ndarray | None = None):
        images = load_mnist("train", pad_to=pad_to).images
        if exclude is not None:  # rows kept out (the de-clip stage leaves out the digits tuning reads)
            images = np.delete(images, exclude, axis=0)
        self.images = torch.from_numpy(images.astype(np.float32))[:, None]
        self.batch_size, self.shift = batch_size, shift
        self.rng = np.random.default_rng(seed)
        self.order: np.ndarray = np.empty(0, dtype=np.int64)

    def _indices(self) -> np.ndarray:
        """The next batch's image indices: epochs of shuffled orders, carried over between epochs."""
        if len(self.order) < self.batch_size:
            self.order = np.concatenate([self.order, self.rng.permutation(len(self.images))])
        idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return idx

    def next(self) -> torch.Tensor:
        idx = self._indices()
        x = self.images[idx]
        if self.shift:
            dy, dx = self.rng.integers(-self.shift, self.shift + 1, size=2)
            x = torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))
        return x


class PlateBatches(HRBatches):
    """Endless shuffled batches of training plates (training fonts and strings only), randomly cropped to
    ``crop`` at horizontal offsets that are multiples of 4 (the flow's Haar grid). The renders are cached in
    ``cache_dir`` (they are a pure function of ``n`` and ``render_seed``)."""

    def __init__(self, n: int, render_seed: int, crop: tuple[int, int], batch_size: int, seed: int,
                 cache_dir: str | Path = "runs"):
        cache = Path(cache_dir) / f"plates-train-{n}-{render_seed}.npy"
        if cache.exists():
            images = np.load(cache)
        else:
            images = render_plates(n, render_seed, "train").images
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, images)
        self.images = torch.from_numpy(images.astype(np.float32))[:, None]
        if crop[0] != HR_SHAPE[0] or crop[1] > HR_SHAPE[1] or crop[1] % 4:
            raise ValueError(f"crop {crop} must be (32, w) with w <= 128 a multiple of 4")
        self.crop, self.batch_size = crop, batch_size
        self.rng = np.random.default_rng(seed)
        self.order: np.ndarray = np.empty(0, dtype=np.int64)

    def next(self) -> torch.Tensor:
        idx = self._indices()
        w = self.crop[1]
        offs = self.rng.integers(0, (self.images.shape[-1] - w) // 4 + 1, size=len(idx)) * 4
        return torch.stack([self.images[i, :, :, o : o + w] for i, o in zip(idx, offs)])


def make_batches(cfg: TrainConfig, seed: int, exclude: np.ndarray | None = None):
    """The training batches of ``cfg.model``'s domain (``exclude``: MNIST training rows left out)."""
    preset = PRESETS[cfg.model]
    if preset["domain"] == "plates":
        return PlateBatches(preset["n_train"], preset["render_seed"], preset["crop"], cfg.batch_size, seed,
                            cache_dir=cfg.work_dir)
    return HRBatches(preset["hr_size"][0], cfg.batch_size, cfg.shift, seed, exclude=exclude)


def dequantize(x255: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Uniform dequantisation centred on the grey levels: (u8 + U(-1/2, 1/2)) / 255."""
    return (x255 + torch.rand(x255.shape, generator=gen) - 0.5) / 255.0


def lr_of(x255: torch.Tensor, scale: int, kernel: str) -> torch.Tensor:
    """The LR image a user would give: round(clip(D(HR))) / 255 on the uint8 HR."""
    deg = get_degradation(tuple(x255.shape[-2:]), scale, kernel)
    return torch.round(deg.down(x255.double()).clamp(0, 255)).float() / 255.0


def _state_path(cfg: TrainConfig, stage: str) -> Path:
    return Path(cfg.work_dir) / cfg.model / f"{stage}.pt"


def resume(path: Path, **stateful) -> tuple[int, float]:
    """Load a resumable checkpoint into ``stateful`` (checkpoint key -> object with ``load_state_dict``) and
    return its (step, seconds); (0, 0.0) when there is none yet."""
    if not path.exists():
        return 0, 0.0
    st = torch.load(path, map_location="cpu", weights_only=True)
    for key, obj in stateful.items():
        obj.load_state_dict(st[key])
    log.info("resumed %s at step %d", path, st["step"])
    return st["step"], st["seconds"]


def save_checkpoint(path: Path, payload: dict) -> None:
    """``torch.save`` through a temporary file, so an interrupted write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def build_flow_config(cfg: TrainConfig) -> FlowConfig:
    preset = PRESETS[cfg.model]
    return FlowConfig.from_dict({"scale": preset["scale"], "hr_size": preset["hr_size"], **cfg.flow})


def train_flow(cfg: TrainConfig) -> None:
    fcfg = build_flow_config(cfg)
    torch.manual_seed(cfg.seed)
    flow = PseudoInverseFlow(fcfg)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    path = _state_path(cfg, "flow")
    step, seconds = resume(path, flow_state=flow, opt_state=opt)
    batches = make_batches(cfg, cfg.seed + step)
    gen = torch.Generator().manual_seed(cfg.seed + 1 + step)
    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc=f"flow {cfg.model}", mininterval=5)
    t0 = time.time()
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x = dequantize(batches.next(), gen)
        loss, parts = flow.nll(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        opt.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", y_rmse255=f"{parts['y_mse'].sqrt().item() * 255:.3f}",
                            z2=f"{parts['z_energy'].item():.3f}")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            save_checkpoint(path, {"flow_config": fcfg.to_dict(), "flow_state": flow.state_dict(),
                                     "opt_state": opt.state_dict(), "step": step + 1,
                                     "seconds": seconds + time.time() - t0, "train_config": cfg.to_dict()})
            log.info("step %d: loss %.4f y_rmse(grey levels) %.3f z_energy %.3f", step + 1, loss.item(),
                     parts["y_mse"].sqrt().item() * 255, parts["z_energy"].item())


def load_frozen_flow(cfg: TrainConfig) -> tuple[PseudoInverseFlow, dict]:
    st = torch.load(_state_path(cfg, "flow"), weights_only=True)
    flow = PseudoInverseFlow(FlowConfig.from_dict(st["flow_config"]))
    flow.load_state_dict(st["flow_state"])
    flow.eval().requires_grad_(False)
    return flow, st


def load_engine_checkpoint(cfg: TrainConfig) -> tuple[dict, PseudoInverseFlow]:
    """The engine checkpoint of ``cfg.init_from`` (refused unless it is a flow engine of ``cfg.model``) and its
    flow, frozen."""
    ck = torch.load(cfg.init_from, map_location="cpu", weights_only=True)
    if ck.get("engine") != "flow" or ck.get("name") != cfg.model:
        raise ValueError(f"{cfg.init_from} is not a flow engine checkpoint of {cfg.model} "
                         f"(engine {ck.get('engine')!r}, name {ck.get('name')!r})")
    flow = PseudoInverseFlow(FlowConfig.from_dict(ck["flow_config"]))
    flow.load_state_dict(ck["flow_state"])
    flow.eval().requires_grad_(False)
    return ck, flow


def load_engine_start(cfg: TrainConfig) -> tuple[PseudoInverseFlow, dict, dict]:
    """The frozen flow, its training record (as :func:`load_frozen_flow` gives) and the engine checkpoint of
    ``cfg.init_from``: continuing a shipped model's kernel DDPM with its own flow, never a retrained one."""
    ck, flow = load_engine_checkpoint(cfg)
    info = ck["train_info"]
    flow_st = {"step": info["flow_steps"], "seconds": info["flow_seconds"], "train_config": info["flow_train_config"]}
    start = {"path": Path(cfg.init_from).name, "sha256": sha256_file(Path(cfg.init_from)), "train_info": info,
             "ddpm_config": ck["ddpm_config"], "unet_state": ck["unet_state"]}
    return flow, flow_st, start


def train_ddpm(cfg: TrainConfig) -> None:
    start = None
    if cfg.init_from:
        flow, flow_st, start = load_engine_start(cfg)
    else:
        flow, flow_st = load_frozen_flow(cfg)
    fcfg = flow.config
    dcfg = KernelDDPMConfig.from_dict({"channels": fcfg.channels, "scale": fcfg.scale, **cfg.ddpm})
    if start is not None and dcfg.to_dict() != start["ddpm_config"]:
        raise ValueError(f"--init-from {cfg.init_from}: its UNet config {start['ddpm_config']} differs from "
                         f"this run's {dcfg.to_dict()}")
    torch.manual_seed(cfg.seed)
    unet = build_unet(dcfg)
    if start is not None:  # the shipped (EMA) weights are where both the weights and their average start
        unet.load_state_dict(start["unet_state"])
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = make_scheduler(dcfg, "ddpm")
    path = _state_path(cfg, "ddpm")
    step, seconds = resume(path, unet_state=unet, opt_state=opt, ema_state=ema)
    batches = make_batches(cfg, cfg.seed + 7 + step)
    gen = torch.Generator().manual_seed(cfg.seed + 11 + step)
    bar = tqdm(range(step, cfg.steps), initial=step, total=cfg.steps, desc=f"ddpm {cfg.model}", mininterval=5)
    t0 = time.time()
    avg = None
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x255 = batches.next()
        with torch.no_grad():
            x = dequantize(x255, gen)
            out = flow(x)
            z0 = zs_to_grid(out.zs, fcfg.channels)
            y = lr_of(x255, fcfg.scale, fcfg.kernel)
        parts: dict = {}
        loss = training_loss(unet, sched, z0, y, dcfg, generator=gen, parts=parts,
                             decode=lambda g, fy=out.y: flow.inverse(fy, grid_to_zs(g, fcfg.channels, fcfg.levels)),
                             x_ref=x, pixel_weight=cfg.pixel_loss, flat_weight=cfg.flat_weight,
                             dark_ink=PRESETS[cfg.model]["domain"] == "plates")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        terms = {k: v.item() for k, v in parts.items()}
        avg = terms if avg is None else {k: 0.98 * avg[k] + 0.02 * v for k, v in terms.items()}
        if step % 50 == 0:
            bar.set_postfix({k: f"{v:.4f}" for k, v in avg.items()})
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            elapsed = seconds + time.time() - t0
            save_checkpoint(path, {"ddpm_config": dcfg.to_dict(), "unet_state": unet.state_dict(),
                                     "opt_state": opt.state_dict(), "ema_state": ema.state_dict(), "step": step + 1,
                                     "seconds": elapsed, "train_config": cfg.to_dict()})
            export_engine(cfg, flow, flow_st, unet, ema, dcfg, step + 1, elapsed, start)
            log.info("step %d: loss(avg) %s; exported", step + 1, ", ".join(f"{k} {v:.4f}" for k, v in avg.items()))


def train_declip(cfg: TrainConfig) -> Path:
    """Train the de-clip estimator (:mod:`sr_engine.models.declip`) of the engine checkpoint ``cfg.init_from``
    and write that checkpoint again with it (``declip_config``, ``declip_state``, ``train_info["declip"]``) to
    ``cfg.export_dir`` (default data/checkpoints). Targets: the frozen flow's own ``y`` of dequantised training
    images, at the LR pixels that the 8-bit LR image clips. MNIST: the digits that strict tuning reads
    (:func:`sr_engine.eval.strict_tuning.tuning_rows`) are left out. Adam, warm-up then cosine; about 11 minutes
    on one CPU thread, so unlike the other stages it keeps no resumable state. Returns the written path."""
    if not cfg.init_from:
        raise ValueError("the declip stage needs --init-from: the engine checkpoint whose flow it learns the input of")
    ck, flow = load_engine_checkpoint(cfg)
    fcfg = flow.config
    dcfg = DeclipConfig.from_dict({"channels": fcfg.channels, **cfg.declip})
    torch.manual_seed(cfg.seed)
    net = DeclipNet(dcfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    exclude = None
    if PRESETS[cfg.model]["domain"] == "mnist":
        exclude = tuning_rows(load_mnist("train", pad_to=PRESETS[cfg.model]["hr_size"][0]).labels)
    batches = make_batches(cfg, cfg.seed + 5, exclude=exclude)
    gen = torch.Generator().manual_seed(cfg.seed + 13)
    t0 = time.time()
    avg = base_avg = None
    bar = tqdm(range(cfg.steps), desc=f"declip {cfg.model}", mininterval=5)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        x255 = batches.next()
        with torch.no_grad():
            y = flow(dequantize(x255, gen)).y
            lr = lr_of(x255, fcfg.scale, fcfg.kernel)
            mask = clipped_mask(torch.round(lr * 255))
            # the constant push's error for comparison: the clipped pixels taken as 0 (255)
            base = ((lr - y) * 255).pow(2)[mask].mean().item() if mask.any() else 0.0
        loss = declip_loss(net, lr, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        base_avg = base if base_avg is None else 0.98 * base_avg + 0.02 * base
        if step % 50 == 0:
            bar.set_postfix({"rmse_grey": f"{avg ** 0.5:.2f}", "at_the_clip": f"{base_avg ** 0.5:.2f}"})
    seconds = time.time() - t0
    log.info("declip %s: %d steps, %.0f s; running RMSE %.2f grey (the LR image's clipped value: %.2f)",
             cfg.model, cfg.steps, seconds, avg ** 0.5, base_avg ** 0.5)
    out = Path(cfg.export_dir or data_dir() / "checkpoints") / f"{cfg.model}.pt"
    payload = dict(ck)
    payload["declip_config"] = dcfg.to_dict()
    payload["declip_state"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
    payload["train_info"] = {**ck["train_info"], "declip": {
        "steps": cfg.steps, "seconds": round(seconds, 1), "train_config": cfg.to_dict(),
        "from": {"path": Path(cfg.init_from).name, "sha256": sha256_file(Path(cfg.init_from))},
        "rmse_grey": round(avg ** 0.5, 3), "rmse_grey_at_the_clip": round(base_avg ** 0.5, 3),
        "left_out_rows": int(len(exclude)) if exclude is not None else 0}}
    save_checkpoint(out, payload)
    return out


def export_engine(cfg, flow, flow_st, unet, ema, dcfg, step: int, seconds: float, start: dict | None = None) -> Path:
    """Write the shipped engine checkpoint: configs + flow weights + the UNet's EMA weights. A run continued
    from an engine checkpoint (``start``) records it: its file name, hash and training record, and the totals."""
    shadow = build_unet(dcfg)
    shadow.load_state_dict(unet.state_dict())
    ema.copy_to(shadow.parameters())
    out = Path(cfg.export_dir or data_dir() / "checkpoints") / f"{cfg.model}.pt"
    payload = {
        "format": CHECKPOINT_FORMAT,
        "engine": "flow",
        "name": cfg.model,
        "domain": PRESETS[cfg.model]["domain"],
        "lr_shape": list(PRESETS[cfg.model]["lr_shape"]),
        "flow_config": flow.config.to_dict(),
        "flow_state": {k: v.clone() for k, v in flow.state_dict().items()},
        "ddpm_config": dcfg.to_dict(),
        "unet_state": shadow.state_dict(),
        "train_info": {
            "flow_steps": flow_st["step"],
            "flow_seconds": round(flow_st["seconds"], 1),
            "flow_train_config": flow_st["train_config"],
            "ddpm_steps": step,
            "ddpm_seconds": round(seconds, 1),
            "ddpm_train_config": cfg.to_dict(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    if start is not None:
        before = start["train_info"]
        payload["train_info"]["continued_from"] = {"path": start["path"], "sha256": start["sha256"],
                                                   "train_info": before}
        payload["train_info"]["ddpm_steps_total"] = before.get("ddpm_steps_total", before["ddpm_steps"]) + step
        payload["train_info"]["ddpm_seconds_total"] = round(
            before.get("ddpm_seconds_total", before["ddpm_seconds"]) + seconds, 1)
    save_checkpoint(out, payload)
    return out


def _same(a, b) -> bool:
    """Equal checkpoint entries: tensors element for element, dicts and lists entry for entry."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return a == b


def average_engines(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the engine checkpoint whose kernel DDPM weights are the parameter-wise mean of those of ``paths``
    (a uniform "model soup", Wortsman et al. 2022: runs fine-tuned from one start stay in one basin, and their
    mean often beats each of them). Everything else (configs, the frozen flow, a de-clip estimator) must be the
    same in every input and is kept; ``ValueError`` otherwise. ``train_info`` records the inputs (file name, hash,
    training record); its totals count the longest chain of steps and every input's own seconds once (plus their
    shared start's, where they were all continued from one checkpoint)."""
    paths, out = [Path(p) for p in paths], Path(out)
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    if any(p.resolve() == out.resolve() for p in paths):
        raise ValueError(f"the average would overwrite its input {out}; write it elsewhere")
    cks = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    first = cks[0]
    if first.get("engine") != "flow":
        raise ValueError(f"{paths[0]} is not a flow engine checkpoint (engine {first.get('engine')!r})")
    for p, ck in zip(paths[1:], cks[1:]):
        if ck.keys() != first.keys():
            raise ValueError(f"{p} and {paths[0]} hold different entries")
        for key in ck:
            if key not in ("unet_state", "train_info") and not _same(ck[key], first[key]):
                raise ValueError(f"{p} and {paths[0]} differ in {key!r}: only kernel DDPMs of one model with "
                                 "one frozen flow can be averaged")
        if ck["unet_state"].keys() != first["unet_state"].keys():
            raise ValueError(f"{p} and {paths[0]} have different UNets")
    unet_state = {}
    for k, v in first["unet_state"].items():
        vals = [ck["unet_state"][k] for ck in cks]
        if v.is_floating_point():
            unet_state[k] = torch.stack([t.double() for t in vals]).mean(0).to(v.dtype)
        elif all(torch.equal(t, v) for t in vals):
            unet_state[k] = v.clone()
        else:
            raise ValueError(f"non-float UNet entry {k!r} differs between the checkpoints")
    infos = [ck["train_info"] for ck in cks]
    starts = {i.get("continued_from", {}).get("sha256") for i in infos}
    own = sum(i["ddpm_seconds"] for i in infos)
    if len(starts) == 1 and None not in starts:
        before = infos[0]["continued_from"]["train_info"]
        seconds_total = before.get("ddpm_seconds_total", before["ddpm_seconds"]) + own
    else:
        seconds_total = sum(i.get("ddpm_seconds_total", i["ddpm_seconds"]) for i in infos)
    info = {key: infos[0][key] for key in ("flow_steps", "flow_seconds", "flow_train_config") if key in infos[0]}
    info.update({
        "ddpm_steps": max(i["ddpm_steps"] for i in infos),
        "ddpm_seconds": round(own, 1),
        "ddpm_steps_total": max(i.get("ddpm_steps_total", i["ddpm_steps"]) for i in infos),
        "ddpm_seconds_total": round(seconds_total, 1),
        "averaged_from": [{"path": p.name, "sha256": sha256_file(p), "train_info": i} for p, i in zip(paths, infos)],
    })
    payload = {**first, "unet_state": unet_state, "train_info": info}
    save_checkpoint(out, payload)
    log.info("averaged %d kernel DDPMs into %s (%s)", len(paths), out, sha256_file(out)[:12])
    return out


def train_digit_classifier(seed: int, out: Path, rows: str = "train", epochs: int = 12) -> None:
    digits = load_mnist("train")
    if rows in ("half0", "half1"):
        keep = (digits.rows % 500 % 2) == int(rows[-1])
        x, y = digits.images[keep], digits.labels[keep]
    else:
        x, y = digits.images, digits.labels
    model = train_classifier(x, y, seed=seed, epochs=epochs)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "rows": rows, "seed": seed, "epochs": epochs,
                "n_train": int(len(x))}, out)
    log.info("saved %s (%s)", out, sha256_file(out)[:12])


# plate readers: role -> (training renders, their seed offset, epochs); renders are training fonts and strings
READER_ROLES = {"judge": (16000, 100, 4), "rater": (6000, 200, 4)}


def train_plate_reader(role: str, seed: int, out: Path) -> None:
    """The judge (``data/readers/plates-reader.pt``) or simulated rater ``seed`` (``data/readers/rater-<seed>.pt``):
    each trains on its own renders (render seed = offset + model seed), so no two share a plate."""
    n, offset, epochs = READER_ROLES[role]
    t0 = time.time()
    plates = render_plates(n, offset + seed, "train")
    model = train_reader(plates.images, plates.texts, seed=seed, epochs=epochs)
    save_reader(model, out, role=role, seed=seed, render_seed=offset + seed, n_plates=n, epochs=epochs,
                seconds=round(time.time() - t0, 1))
    log.info("saved %s (%s) in %.0f s", out, sha256_file(out)[:12], time.time() - t0)

