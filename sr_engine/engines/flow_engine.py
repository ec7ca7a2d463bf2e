"""The flow engine: flow pseudoinverse + kernel-space DDPM behind the :class:`SREngine` contract.

    from sr_engine import load_engine
    eng = load_engine("mnist-x4")
    bank = eng.sample_bank(lr, n=64, steps=8, seed=0)   # bank.images uint8 (64, 28, 28)
"""

from __future__ import annotations

import time
from typing import Any, Literal
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..degradation import get_degradation
from ..ensemble import EnsembleReport, ensemble_of
from ..metrics import flow_consistency, lr_psnr_batch
from ..models.flow import PseudoInverseFlow, grid_to_zs
from ..models.kernel_diffusion import SCHEDULERS, KernelDDPMConfig, p_sample_loop
from .base import Bank, as_lr_array, check_bank_args, check_mode, from_uint8, sample_seeds, to_uint8


class FlowEngine:
    """Flow pseudoinverse + kernel-space DDPM. Modes: strict (default; DDPM + exact projection), flow (DDPM,
    no projection), prior (z ~ N(0, tau^2 I), no projection)."""

    modes: tuple[str, ...] = ("strict", "flow", "prior")
    schedulers: tuple[str, ...] = SCHEDULERS  # the kernel DDPM's diffusers schedulers
    option_names: tuple[str, ...] = ()  # no pipeline options
    channels: int
    lr_shape: tuple[int | None, int | None] | None
    domain: str

    def __init__(self, name: str, flow: PseudoInverseFlow, unet, ddpm_config: KernelDDPMConfig,
                 checkpoint_sha256: str = "", train_info: dict | None = None, max_lr_side: int = 128,
                 batch_size: int = 64, projection_tol: float = 1e-6,
                 lr_shape: tuple[int | None, int | None] | None = None, domain: str = ""):
        self.name = name
        self.flow = flow.eval().requires_grad_(False)
        self.unet = unet.eval().requires_grad_(False)
        self.ddpm_config = ddpm_config
        self.scale = flow.config.scale
        self.channels = flow.config.channels
        self.kernel = flow.config.kernel
        self.checkpoint_sha256 = checkpoint_sha256
        self.train_info = train_info or {}
        self.max_lr_side = max_lr_side  # larger LR images are refused (configurable)
        self.batch_size = batch_size  # samples per network batch
        self.projection_tol = projection_tol  # max |D x - y| on [0, 1] that the strict projection iterates to
        # the LR (height, width) the model was trained for; None in a place: any size there (up to max_lr_side)
        self.lr_shape = tuple(lr_shape) if lr_shape is not None else None
        self.domain = domain  # what the model was trained on ("mnist", "plates"); "" when unknown

    def check_lr_shape(self, shape: tuple[int, int]) -> None:
        """Refuse an LR image of another size than the model's (a clear error naming the model's input size)."""
        if self.lr_shape is None:
            return
        want_h, want_w = self.lr_shape
        if (want_h is not None and shape[0] != want_h) or (want_w is not None and shape[1] != want_w):
            s = self.scale
            if want_w is None:
                need = f"LR images {want_h} pixels high (any width up to {self.max_lr_side}; HR {want_h * s} high)"
            else:
                need = f"{want_h}x{want_w} LR images ({want_h * s}x{want_w * s} HR)"
            raise ValueError(f"model {self.name!r} takes {need}; got a {shape[0]}x{shape[1]} image "
                             "(images are never resized: give one of the model's size)")

    @property
    def config(self) -> dict:
        """The engine config recorded with every bank (provenance)."""
        return {"engine": "flow", "name": self.name, "scale": self.scale, "channels": self.channels,
                "kernel": self.kernel, "flow": self.flow.config.to_dict(), "ddpm": self.ddpm_config.to_dict(),
                "checkpoint_sha256": self.checkpoint_sha256, "projection_tol": self.projection_tol,
                "lr_shape": list(self.lr_shape) if self.lr_shape is not None else None, "domain": self.domain}

    def __repr__(self) -> str:
        return f"FlowEngine({self.name!r}, scale={self.scale}, channels={self.channels})"

    # ---- sampling ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_bank(self, lr: Any, n: int = 64, steps: int = 8, seed: int = 0, *, mode: str | None = None,
                    tau: float = 1.0, timesteps: Sequence[int] | None = None, start_step: int | None = None,
                    scheduler: str = "ddim", progress: bool = False) -> Bank:
        """Generate ``n`` HR samples for one LR image.

        Args:
            lr: uint8 (H, W) / (H, W, 3), float on [0, 1], or a PIL image.
            n: samples; steps: scheduler steps (1 .. training length); seed: the bank's seed.
            mode: "strict" (default), "flow" or "prior".
            tau: temperature of the Gaussian that sampling starts from (prior mode: z ~ N(0, tau^2 I)).
            timesteps / start_step / scheduler: see :func:`sr_engine.models.kernel_diffusion.p_sample_loop`.
            progress: show a progress bar over batches.
        """
        mode = check_mode(mode, self.modes)
        check_bank_args(n, tau)
        t0 = time.perf_counter()
        y_np = as_lr_array(lr, self.channels, self.max_lr_side)
        self.check_lr_shape(y_np.shape[-2:])
        y = torch.from_numpy(y_np).float()[None]  # (1, C, h, w)
        seeds = sample_seeds(int(seed), int(n))
        grid_shape = (4 * self.channels, y.shape[-2] * self.scale // 2, y.shape[-1] * self.scale // 2)
        z_shapes = self.flow.z_shapes(tuple(y.shape[-2:]))
        deg = get_degradation((y.shape[-2] * self.scale, y.shape[-1] * self.scale), self.scale, self.kernel)
        images, residuals, flow_cons = [], [], []
        batches = range(0, int(n), self.batch_size)
        if progress:
            batches = tqdm(batches, desc=f"bank {self.name}", total=len(batches))
        for start in batches:
            bseeds = seeds[start : start + self.batch_size]
            gens = [torch.Generator().manual_seed(int(s)) for s in bseeds]
            yb = y.expand(len(bseeds), -1, -1, -1)
            if mode == "prior":
                zs = [torch.stack([torch.randn(shape, generator=g) for g in gens]) * tau for shape in z_shapes]
            else:
                noise = torch.stack([torch.randn(grid_shape, generator=g) for g in gens]) * tau
                grid = p_sample_loop(self.unet, self.ddpm_config, yb, noise, steps=steps, scheduler=scheduler,
                                     timesteps=timesteps, start_step=start_step, generators=gens)
                zs = grid_to_zs(grid, self.channels, self.flow.config.levels)
            x = self.flow.inverse(yb, zs)
            if mode == "strict":
                proj = deg.project(x.double(), yb.double(), tol=self.projection_tol)
                x = proj.x
                residuals.append(proj.residual.numpy())
            u8 = to_uint8(x)
            images.append(u8)
            flow_cons.append(flow_consistency(self.flow(from_uint8(u8, self.channels)).y, yb).numpy())
        images_np = np.concatenate(images)
        lr_ref = y_np[0] if self.channels == 1 else np.moveaxis(y_np, 0, -1)
        return Bank(
            images=images_np,
            seeds=seeds,
            lr_psnr=lr_psnr_batch(images_np, lr_ref, self.scale, self.kernel),
            flow_consistency=np.concatenate(flow_cons).astype(np.float64),
            projection_residual=np.concatenate(residuals).astype(np.float64) if residuals else None,
            mode=mode,
            steps=len(timesteps) if timesteps is not None else int(steps),
            scheduler=scheduler,
            model=self.name,
            seconds=time.perf_counter() - t0,
            settings={"tau": tau, "timesteps": list(map(int, timesteps)) if timesteps is not None else None,
                      "start_step": start_step, "seed": int(seed)},
        )

    # ---- ensembles ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def ensemble(self, images: np.ndarray, lr: Any, weights: Sequence[float] | None = None, *,
                 reproject: Literal["auto", "always", "never"] = "auto") -> EnsembleReport:
        """Pixel mean of chosen samples (LDM-SS), checked against D (LR-PSNR) and the flow."""
        y_np = as_lr_array(lr, self.channels, self.max_lr_side)
        self.check_lr_shape(y_np.shape[-2:])
        return ensemble_of(images, y_np, self.scale, self.kernel, weights=weights, reproject=reproject,
                           flow_y=lambda x: self.flow(x).y)
