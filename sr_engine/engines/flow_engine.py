"""The flow engine: flow pseudoinverse + kernel-space DDPM behind the :class:`SREngine` contract.

    from sr_engine import load_engine
    eng = load_engine("mnist-x4")
    bank = eng.sample_bank(lr, n=64, steps=8, seed=0)   # bank.images uint8 (64, 28, 28)

Strict mode (docs/engine.md, "The projection"): the kernel DDPM sees the LR image; the flow is fed the de-clipped
LR image (:func:`sr_engine.projection.declip_lr`: it was trained on the unclipped ``y ~= D x``; a model that carries
a de-clip estimator, :mod:`sr_engine.models.declip`, starts from its estimate of that y), and its output, after the
model's Haar shrinkage of faint texture (:func:`sr_engine.projection.haar_shrink`; none at ``shrink_grey`` 0), is
projected onto the 8-bit slab ``{x : round(clip(255 D x)) = LR}`` in the background-protecting metric
(:func:`sr_engine.projection.strict_project`), every 8-bit sample verified. The de-clip amount, the weights' floor
and the shrink threshold are per model (:data:`TUNED_STRICT`, :data:`TUNED_STRICT_DECLIP` for a model with a de-clip
estimator; chosen on training rows by ``python -m sr_engine tune-strict``).
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
from ..projection import StrictProjectionError, StrictSettings, declip_lr, strict_project
from ..models.declip import DeclipNet
from ..models.flow import PseudoInverseFlow, grid_to_zs
from ..models.kernel_diffusion import SCHEDULERS, KernelDDPMConfig, p_sample_loop
from .base import Bank, as_lr_array, check_bank_args, check_mode, from_uint8, sample_seeds, to_uint8

# Strict-mode settings chosen on TRAINING rows only (``python -m sr_engine tune-strict --model NAME``; the table and
# the command are in each model card). Digits are light strokes on black; plates dark text on a light plate.
TUNED_STRICT: dict[str, StrictSettings] = {
    "mnist-x4": StrictSettings(declip_grey=12.0, floor=0.1, dark_ink=False),  # results/tune-strict-mnist-x4.md
    # results/tune-strict-mnist-x8.md; the shrink: results/strict/tune-shrink-mnist-x8.md
    "mnist-x8": StrictSettings(declip_grey=4.0, floor=0.003, dark_ink=False, shrink_grey=6.0),
    # results/tune-strict-plates-x4.md; the shrink: results/strict/tune-shrink-plates-x4.md
    "plates-x4": StrictSettings(declip_grey=8.0, floor=0.003, dark_ink=True, shrink_grey=16.0),
}
# the same for a model that carries a de-clip estimator (sr_engine.models.declip): the amount is the push beyond its
# estimate, tuned with it (the shipped mnist-x4 does; the table above holds for its file without one)
TUNED_STRICT_DECLIP: dict[str, StrictSettings] = {
    # results/strict/tune-strict-declip-*; the shrink: results/strict/tune-shrink-mnist-x4.md
    "mnist-x4": StrictSettings(declip_grey=2.0, floor=0.1, dark_ink=False, shrink_grey=12.0),
}
# a model of a known domain without tuned settings gets its domain's (those of the shipped model of that domain);
# an unknown one the Euclidean slab projection without de-clipping
DOMAIN_STRICT: dict[str, StrictSettings] = {
    "mnist": TUNED_STRICT["mnist-x8"],
    "plates": TUNED_STRICT["plates-x4"],
}


def strict_settings_for(name: str, domain: str, declip: bool = False) -> StrictSettings:
    """The strict-mode settings of a model: tuned for its name (with its de-clip estimator if ``declip``), else its
    domain's, else Euclidean, no de-clip."""
    tuned = (TUNED_STRICT_DECLIP if declip else TUNED_STRICT).get(name)
    return tuned or DOMAIN_STRICT.get(domain) or StrictSettings()


class FlowEngine:
    """Flow pseudoinverse + kernel-space DDPM. Modes: strict (default; DDPM, de-clipped flow input, projection
    onto the 8-bit slab, verified), flow (DDPM, de-clipped flow input, no projection), prior (z ~ N(0, tau^2 I)
    through the flow fed the LR image, no projection)."""

    modes: tuple[str, ...] = ("strict", "flow", "prior")
    schedulers: tuple[str, ...] = SCHEDULERS  # the kernel DDPM's diffusers schedulers
    option_names: tuple[str, ...] = ()  # no pipeline options
    channels: int
    lr_shape: tuple[int | None, int | None] | None
    domain: str

    def __init__(self, name: str, flow: PseudoInverseFlow, unet, ddpm_config: KernelDDPMConfig,
                 checkpoint_sha256: str = "", train_info: dict | None = None, max_lr_side: int = 128,
                 batch_size: int = 64, projection_tol: float = 1e-6,
                 lr_shape: tuple[int | None, int | None] | None = None, domain: str = "",
                 strict: StrictSettings | None = None, declip: DeclipNet | None = None):
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
        # the strict projection's tolerance (its optimality residual, units of D x on [0, 1]): it bounds how far
        # D x of the float sample may lie outside the slab; the 8-bit samples are verified exactly anyway
        self.projection_tol = projection_tol
        # the LR (height, width) the model was trained for; None in a place: any size there (up to max_lr_side)
        self.lr_shape = tuple(lr_shape) if lr_shape is not None else None
        self.domain = domain  # what the model was trained on ("mnist", "plates"); "" when unknown
        # de-clip amount and projection metric of strict mode (and the de-clip of flow mode)
        # the estimator of the unclipped y where the LR image is clipped (None: the constant push alone)
        self.declip = declip.eval().requires_grad_(False) if declip is not None else None
        if self.declip is not None and self.declip.config.channels != self.channels:
            raise ValueError(f"the de-clip estimator has {self.declip.config.channels} channel(s), "
                             f"the flow {self.channels}")
        self.strict = strict if strict is not None else strict_settings_for(name, domain, self.declip is not None)

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
                "lr_shape": list(self.lr_shape) if self.lr_shape is not None else None, "domain": self.domain,
                "strict": self.strict.to_dict(),
                "declip": self.declip.config.to_dict() if self.declip is not None else None}

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
        lr_u8 = np.round(y_np * 255).astype(np.uint8)  # (C, h, w): the 8-bit LR image that strict mode matches
        # the flow's input: de-clipped in strict and flow mode; prior mode keeps the LR image (a baseline)
        y_flow = y if mode == "prior" else torch.from_numpy(self.flow_input(lr_u8)).float()[None]
        seeds = sample_seeds(int(seed), int(n))
        deg = get_degradation((y.shape[-2] * self.scale, y.shape[-1] * self.scale), self.scale, self.kernel)
        images, residuals, flow_cons = [], [], []
        batches = range(0, int(n), self.batch_size)
        if progress:
            batches = tqdm(batches, desc=f"bank {self.name}", total=len(batches))
        for start in batches:
            bseeds = seeds[start : start + self.batch_size]
            gens = [torch.Generator().manual_seed(int(s)) for s in bseeds]
            yb = y.expand(len(bseeds), -1, -1, -1)
            zs = self.sample_latents(yb, gens, mode=mode, tau=tau, steps=steps, scheduler=scheduler,
                                     timesteps=timesteps, start_step=start_step)
            x = self.flow.inverse(y_flow.expand(len(bseeds), -1, -1, -1), zs)
            if mode == "strict":
                x = self.strict.shrink(x.double(), self.scale)
                try:
                    u8, info = strict_project(deg, x, lr_u8, weights=self.strict.weights(x),
                                              tol=self.projection_tol)
                except StrictProjectionError as err:
                    bad = [int(bseeds[i]) for i in err.indices]
                    raise StrictProjectionError(
                        f"strict mode: the samples with seeds {bad} do not round back to the LR image: {err}",
                        [start + i for i in err.indices], seeds=bad) from err
                u8 = u8[:, 0] if self.channels == 1 else np.moveaxis(u8, 1, -1)
                residuals.append(info.max_violation)
            else:
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
                      "start_step": start_step, "seed": int(seed),
                      **({"strict": self.strict.to_dict()} if mode != "prior" else {})},
        )

    @torch.no_grad()
    def flow_input(self, lr_u8: np.ndarray, declip_grey: float | None = None) -> np.ndarray:
        """The flow's LR input for an 8-bit LR image ``(C, h, w)``: float64 on about [0, 1], de-clipped by
        ``declip_grey`` grey (default ``self.strict.declip_grey``; :func:`sr_engine.projection.declip_lr`), from
        the de-clip estimator's estimate where the model carries one."""
        amount = self.strict.declip_grey if declip_grey is None else float(declip_grey)
        estimate = None
        if self.declip is not None:
            lr = torch.from_numpy(np.asarray(lr_u8, dtype=np.float32) / 255.0)[None]
            estimate = self.declip(lr)[0].double().numpy()
        return np.asarray(declip_lr(lr_u8, amount, estimate))

    def sample_latents(self, yb: torch.Tensor, gens: list[torch.Generator], *, mode: str, tau: float, steps: int,
                       scheduler: str, timesteps: Sequence[int] | None, start_step: int | None) -> list[torch.Tensor]:
        """The flow's z for one batch: the kernel DDPM conditioned on the LR image ``yb`` (B, C, h, w) on [0, 1]
        (strict, flow), or ``z ~ N(0, tau^2 I)`` (prior); one generator per sample."""
        if mode == "prior":
            z_shapes = self.flow.z_shapes(tuple(yb.shape[-2:]))
            return [torch.stack([torch.randn(shape, generator=g) for g in gens]) * tau for shape in z_shapes]
        grid_shape = (4 * self.channels, yb.shape[-2] * self.scale // 2, yb.shape[-1] * self.scale // 2)
        noise = torch.stack([torch.randn(grid_shape, generator=g) for g in gens]) * tau
        grid = p_sample_loop(self.unet, self.ddpm_config, yb, noise, steps=steps, scheduler=scheduler,
                             timesteps=timesteps, start_step=start_step, generators=gens)
        return grid_to_zs(grid, self.channels, self.flow.config.levels)

    # ---- ensembles ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def ensemble(self, images: np.ndarray, lr: Any, weights: Sequence[float] | None = None, *,
                 reproject: Literal["auto", "always", "never"] = "auto") -> EnsembleReport:
        """Pixel mean of chosen samples (LDM-SS), checked against D (LR-PSNR) and the flow."""
        y_np = as_lr_array(lr, self.channels, self.max_lr_side)
        self.check_lr_shape(y_np.shape[-2:])
        return ensemble_of(images, y_np, self.scale, self.kernel, weights=weights, reproject=reproject,
                           flow_y=lambda x: self.flow(x).y, metric=self.strict.weights)
