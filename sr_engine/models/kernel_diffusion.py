"""Kernel-space DDPM: a diffusers ``UNet2DModel`` that denoises only the flow's kernel part z, conditioned on y.

z lives on the compact grid ``(B, 4C, H/2, W/2)`` of :func:`sr_engine.models.flow.zs_to_grid`; the LR condition y is
enlarged (nearest) to that grid and concatenated. Training (Algorithm 2 of the pseudoinverse paper) draws
``z_0 = f(x)`` from the frozen flow and uses diffusers' ``DDPMScheduler`` for the forward process ``q_sample``;
sampling runs any diffusers scheduler below over any number of steps, an explicit timestep list, or from an
intermediate step. As in improved-diffusion, these functions take the network as an argument.

The network is trained with v-prediction, a reparameterisation of noise prediction
(``eps = sqrt(abar_t) v + sqrt(1 - abar_t) z_t``): the schedulers convert it, and it keeps few-step samples
(the 8-step banks the app serves) free of the residual noise an epsilon model leaves at the first, noisiest step.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from ..config import ConfigMixin

SchedulerName = Literal["ddim", "dpmsolver", "ddpm"]
SCHEDULERS: tuple[str, ...] = ("ddim", "dpmsolver", "ddpm")


@dataclass
class KernelDDPMConfig(ConfigMixin):
    channels: int = 1  # image channels C; the grid has 4C, the condition C
    scale: int = 4  # the condition y is enlarged by scale / 2 to reach the grid
    block_out_channels: tuple[int, ...] = (32, 64)  # UNet widths; one downsample per extra entry
    layers_per_block: int = 2  # resnet layers per UNet block
    norm_num_groups: int = 8  # group norm groups (divides every width)
    num_train_timesteps: int = 1000  # length of the training chain
    beta_schedule: str = "squaredcos_cap_v2"  # cosine schedule (Nichol & Dhariwal)
    prediction_type: str = "v_prediction"  # what the network outputs (diffusers' names)
    timestep_spacing: str = "trailing"  # few-step schedules start at t = T - 1

    @property
    def grid_multiple(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


def build_unet(cfg: KernelDDPMConfig) -> UNet2DModel:
    n = len(cfg.block_out_channels)
    return UNet2DModel(
        sample_size=None,
        in_channels=4 * cfg.channels + cfg.channels,
        out_channels=4 * cfg.channels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
        norm_num_groups=cfg.norm_num_groups,
    )


def make_scheduler(cfg: KernelDDPMConfig, name: str = "ddim"):
    """A diffusers scheduler for the trained chain. ``ddim`` and ``dpmsolver`` are deterministic given the
    starting noise; ``ddpm`` is ancestral (it draws fresh noise from the per-sample generators each step)."""
    common = dict(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        timestep_spacing=cfg.timestep_spacing,
    )
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)
    if name == "dpmsolver":
        return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    if name == "ddpm":
        return DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small")
    raise ValueError(f"unknown scheduler {name!r}; expected one of {SCHEDULERS}")


def condition(y: torch.Tensor, cfg: KernelDDPMConfig) -> torch.Tensor:
    """y (B, C, h, w) on [0, 1] -> (B, C, h*s/2, w*s/2) on [-1, 1], nearest-enlarged onto the z grid."""
    return F.interpolate(y, scale_factor=cfg.scale // 2, mode="nearest") * 2 - 1


def _pad(t: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = t.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        t = F.pad(t, (0, pw, 0, ph), mode="replicate")
    return t, (h, w)


def predict(unet: UNet2DModel, z_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor, cfg: KernelDDPMConfig):
    """The network's output for z_t (B, 4C, H', W') at timesteps t; the grid is padded to what the UNet's
    downsampling needs and cropped back."""
    inp, (h, w) = _pad(torch.cat([z_t, cond], dim=1), cfg.grid_multiple)
    if t.dim() == 0:
        t = t.expand(z_t.shape[0])
    return unet(inp, t).sample[..., :h, :w]


def predicted_z0(scheduler, z_t: torch.Tensor, model_out: torch.Tensor, t: torch.Tensor,
                 cfg: KernelDDPMConfig) -> torch.Tensor:
    """The network's estimate of z_0 from its output at z_t: ``sqrt(abar) z_t - sqrt(1 - abar) v`` for
    v-prediction, ``(z_t - sqrt(1 - abar) eps) / sqrt(abar)`` for epsilon."""
    abar = scheduler.alphas_cumprod.to(z_t.dtype)[t].view(-1, 1, 1, 1)
    if cfg.prediction_type == "epsilon":
        return (z_t - (1 - abar).sqrt() * model_out) / abar.sqrt()
    return abar.sqrt() * z_t - (1 - abar).sqrt() * model_out


def flat_ground(x: torch.Tensor, dark_ink: bool = False, distance: int = 2, ink_level: float = 0.5) -> torch.Tensor:
    """(B, C, H, W) images on [0, 1] -> (B, 1, H, W) float, 1 on pixels more than ``distance`` pixels (Chebyshev)
    from any stroke pixel (ink >= ``ink_level``: the intensity, or ``1 - intensity`` with ``dark_ink``; colour
    images use the channel mean), 0 elsewhere: :func:`sr_engine.metrics.background_mask` for a batch."""
    v = x.mean(1, keepdim=True)
    ink = ((1 - v) if dark_ink else v) >= ink_level
    near = F.max_pool2d(ink.float(), 2 * distance + 1, stride=1, padding=distance)
    return 1.0 - near


def training_loss(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    z0: torch.Tensor,
    y: torch.Tensor,
    cfg: KernelDDPMConfig,
    generator: torch.Generator | None = None,
    *,
    decode=None,
    x_ref: torch.Tensor | None = None,
    pixel_weight: float = 0.0,
    flat_weight: float = 0.0,
    dark_ink: bool = False,
    parts: dict | None = None,
) -> torch.Tensor:
    """One Monte-Carlo term of the simple loss (Ho et al. eq. 14, in the configured parameterisation).

    With ``pixel_weight > 0`` it adds the same loss measured in pixels: ``decode`` (the frozen flow's inverse at
    the image's own y) maps the network's estimate of z_0 to an image, compared with ``x_ref`` and weighted per
    timestep as the configured target weights the error of z_0 (v: ``1 / (1 - abar)``; epsilon:
    ``abar / (1 - abar)``). The flow pulls z onto N(0, I), so a unit of z moves a stroke's pixels several times
    more than a flat background's; the pixel term spends the network on the z that the image shows.
    ``flat_weight`` multiplies the pixel term by ``1 + flat_weight`` on the background of ``x_ref``
    (:func:`flat_ground`; ``dark_ink`` for dark text on a light plate): faint texture there costs little squared
    error but much SSIM. ``parts``, if given, receives both terms (detached) for logging."""
    if flat_weight > 0 and pixel_weight <= 0:
        raise ValueError("flat_weight weighs the pixel term: it needs pixel_weight > 0")
    b = z0.shape[0]
    noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
    t = torch.randint(0, cfg.num_train_timesteps, (b,), generator=generator)
    z_t = scheduler.add_noise(z0, noise, t)  # q_sample, eq. 4
    target = noise if cfg.prediction_type == "epsilon" else scheduler.get_velocity(z0, noise, t)
    out = predict(unet, z_t, condition(y, cfg), t, cfg)
    loss = F.mse_loss(out, target)
    if parts is not None:
        parts["v"] = loss.detach()
    if pixel_weight > 0:
        if decode is None or x_ref is None:
            raise ValueError("pixel_weight > 0 needs decode and x_ref")
        abar = scheduler.alphas_cumprod.to(z0.dtype)[t].view(-1, 1, 1, 1)
        w = (abar if cfg.prediction_type == "epsilon" else 1.0) / (1 - abar)
        err = (decode(predicted_z0(scheduler, z_t, out, t, cfg)) - x_ref).pow(2) * w
        if flat_weight > 0:
            err = err * (1 + flat_weight * flat_ground(x_ref, dark_ink))
        pixel = err.mean()
        if parts is not None:
            parts["pixel"] = pixel.detach()
        loss = loss + pixel_weight * pixel
    return loss


def set_schedule(sched, steps: int, timesteps: Sequence[int] | None = None,
                 start_step: int | None = None) -> torch.Tensor:
    """Set a diffusers scheduler's timesteps and return the ones to run: ``steps`` evenly spaced, or an explicit
    strictly decreasing list (only for schedulers whose ``set_timesteps`` takes ``timesteps=``: DDIM assumes
    even spacing), from index ``start_step`` on. Raises ``ValueError`` for what cannot be run."""
    n_train = int(sched.config.num_train_timesteps)
    if timesteps is not None:
        if "timesteps" not in inspect.signature(sched.set_timesteps).parameters:
            raise ValueError(f"an explicit timestep list needs a scheduler whose set_timesteps takes one; "
                             f"{type(sched).__name__} assumes even spacing")
        ts = [int(t) for t in timesteps]
        if not ts or any(a <= b for a, b in zip(ts, ts[1:])) or ts[0] >= n_train or ts[-1] < 0:
            raise ValueError(f"timesteps must be strictly decreasing within [0, {n_train})")
        sched.set_timesteps(timesteps=ts)
    else:
        if not 1 <= int(steps) <= n_train:
            raise ValueError(f"steps must be in 1..{n_train}, got {steps}")
        sched.set_timesteps(int(steps))
    schedule = sched.timesteps
    if start_step:
        if not 0 <= start_step < len(schedule):
            raise ValueError(f"start_step must be in 0..{len(schedule) - 1}, got {start_step}")
        schedule = schedule[start_step:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start_step)
    return schedule


@torch.no_grad()
def p_sample_loop(
    unet: UNet2DModel,
    cfg: KernelDDPMConfig,
    y: torch.Tensor,
    noise: torch.Tensor,
    *,
    steps: int = 8,
    scheduler: str = "ddim",
    timesteps: Sequence[int] | None = None,
    start_step: int | None = None,
    generators: list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Reverse process: z_T -> z_0 on the grid.

    Args:
        y: (B, C, h, w) LR condition on [0, 1].
        noise: (B, 4C, H/2, W/2) the starting Gaussian draw (already scaled by any temperature).
        steps: number of scheduler steps, 1 .. num_train_timesteps (ignored when ``timesteps`` is given).
        timesteps: an explicit, strictly decreasing list (dpmsolver and ddpm only: DDIM assumes even spacing).
        start_step: start at this index of the schedule from z_0 = 0 (the prior mean) noised to that step
            (InvSR-style), instead of from pure noise.
        generators: one per sample, for schedulers that draw noise while stepping.
    """
    sched = make_scheduler(cfg, scheduler)
    schedule = set_schedule(sched, steps, timesteps, start_step)
    z = noise
    if start_step:
        z = sched.add_noise(torch.zeros_like(noise), noise, schedule[:1])
    cond = condition(y, cfg)
    extra = {"generator": generators} if scheduler == "ddpm" else {}
    for t in schedule:
        model_out = predict(unet, sched.scale_model_input(z, t), cond, t, cfg)
        z = sched.step(model_out, t, z, **extra).prev_sample
    return z

