"""Bring your own diffusion model: a local diffusers super-resolution pipeline as a bank source, made consistent.

    from sr_engine import load_engine
    eng = load_engine("diffusers:/models/ldm-super-resolution-4x")   # a folder saved with save_pretrained
    bank = eng.sample_bank(lr_rgb_uint8, n=16, steps=20, seed=0, mode="guided", scheduler="dpmsolver")

The pipeline's own ``__call__`` is not used: it takes PIL images through a path that crops to multiples of 32,
offers no hook between "predict" and "step", and draws one noise for a whole batch. This module runs its own
visible loop (condition -> scale input -> model -> [DDNM correction] -> step) on the pipeline's components, with
one ``torch.Generator`` per sample, so that

- ``strict``: the final sample is projected exactly onto {x : D x = y, 0 <= x <= 1} (``Degradation.project``);
- ``guided``: at every step the predicted clean image is corrected DDNM-style, ``x0 <- x0 + D^+(y - D x0)``
  (Wang et al. 2023, eq. 11), in pixel space after decoding and re-encoded for latent pipelines; the corrected
  x0 is handed back to the scheduler as an equivalent model output, so any scheduler takes the corrected step.
  It ends with the strict projection;
- ``free``: the pipeline's raw output (reported with its LR-PSNR, no guarantee).

Each pipeline class is one small :class:`PipelineAdapter` (how to load it, condition it, call its network, and
encode / decode); supporting another image-conditioned class is one more adapter in ``ADAPTERS``.
Weights are loaded from safetensors only (pickled weights can run code when unpickled) and never downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import time
from pathlib import Path
from typing import Any, ClassVar, Literal
from collections.abc import Sequence

import diffusers
import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from tqdm import tqdm

from ..degradation import Degradation, get_degradation
from ..ensemble import EnsembleReport, ensemble_of
from ..metrics import lr_psnr_batch
from ..models.kernel_diffusion import set_schedule
from .base import Bank, as_lr_array, check_bank_args, check_mode, sample_seeds, sha256_file, to_uint8

SchedulerName = Literal["ddim", "dpmsolver", "euler"]
SCHEDULERS: tuple[str, ...] = ("ddim", "dpmsolver", "euler")
PICKLED_SUFFIXES: tuple[str, ...] = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


# ---- one adapter per pipeline class -------------------------------------------------------------------------
class PipelineAdapter:
    """How the engine drives one diffusers pipeline class. Images are ``(B, 3, H, W)`` on [-1, 1]; latents are
    ``(B, latent_channels, h, w)`` at the (padded) LR size ``h x w``; the decoded image is ``scale`` times larger.

    Subclasses set ``pipeline_class`` and ``options`` (the keywords they accept, with defaults) and implement
    :meth:`load`, :meth:`condition`, :meth:`predict`, :meth:`decode` and :meth:`encode`.
    """

    pipeline_class: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}  # keyword -> default; anything else is refused

    def __init__(self, pipe, device: str = "cpu", **options):
        # float32 networks (a folder saved in float16 is cast); D and the projection run in float64 anyway
        self.pipe = pipe.to(device) if pipe.dtype == torch.float32 else pipe.to(device, torch.float32)
        self.device = torch.device(device)
        self.settings = {**self.options, **options}

    @classmethod
    def load(cls, folder: Path):
        """The pipeline from ``folder``: local files only, safetensors only, float32."""
        raise NotImplementedError

    @property
    def scale(self) -> int:  # HR side / LR side
        raise NotImplementedError

    @property
    def lr_multiple(self) -> int:  # the LR grid (= latent grid) must be a multiple of this for the UNet
        raise NotImplementedError

    @property
    def latent_channels(self) -> int:
        raise NotImplementedError

    def condition(self, y: torch.Tensor, generators: list[torch.Generator]) -> Any:
        """The network's condition for a batch: ``y`` is the padded LR ``(B, 3, h, w)`` on [-1, 1]."""
        raise NotImplementedError

    def predict(self, x_in: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        """The network's output (in the scheduler's ``prediction_type``) for the scaled input ``x_in``."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _from_pretrained(pipeline_cls, folder: Path):
    try:
        return pipeline_cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except Exception as err:  # a broken or incomplete folder: say which, and why
        raise ValueError(f"cannot load {pipeline_cls.__name__} from {folder}: {err}") from err


def _down_multiple(block_out_channels: Sequence[int]) -> int:
    """A diffusers UNet / autoencoder halves the grid in every block but the last."""
    return 2 ** (len(block_out_channels) - 1)


class LDMSuperResolutionAdapter(PipelineAdapter):
    """``LDMSuperResolutionPipeline`` (the LDM-SS paper's model): VQ autoencoder + ``UNet2DModel`` that takes the
    latent concatenated with the LR image; no prompt."""

    pipeline_class = "LDMSuperResolutionPipeline"

    @classmethod
    def load(cls, folder: Path):
        # diffusers 0.42 keeps the class here (the top-level name is a deprecated alias); lazy: a pipeline module
        # is heavy to import and only this adapter needs it
        from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion_superresolution import (
            LDMSuperResolutionPipeline,
        )

        return _from_pretrained(LDMSuperResolutionPipeline, folder)

    @property
    def scale(self) -> int:
        return _down_multiple(self.pipe.vqvae.config.block_out_channels)

    @property
    def lr_multiple(self) -> int:
        return _down_multiple(self.pipe.unet.config.block_out_channels)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.vqvae.config.latent_channels)

    def condition(self, y, generators):
        return y

    def predict(self, x_in, t, cond):
        # The pipeline scales the concatenation; we scale only the noisy latent (identical for DDIM and
        # DPM-Solver, whose scaling is the identity), since the LR image carries no noise to normalise.
        return self.pipe.unet(torch.cat([x_in, cond], dim=1), t.to(x_in.device).expand(x_in.shape[0])).sample

    def decode(self, latents):
        return self.pipe.vqvae.decode(latents).sample  # quantises, as the pipeline does

    def encode(self, images):
        return self.pipe.vqvae.encode(images).latents


class StableDiffusionUpscaleAdapter(PipelineAdapter):
    """``StableDiffusionUpscalePipeline`` (Stable Diffusion's x4 upscaler): KL autoencoder + text-conditioned
    ``UNet2DConditionModel`` that takes the latent concatenated with the noise-augmented LR image and the noise
    level as a class label. The prompt may stay empty; classifier-free guidance runs only with a prompt (with an
    empty prompt and an empty negative prompt both branches are the same network call)."""

    pipeline_class = "StableDiffusionUpscalePipeline"
    options = {"prompt": "", "guidance_scale": 9.0, "noise_level": 20}  # the pipeline's own defaults

    def __init__(self, pipe, device: str = "cpu", **options):
        super().__init__(pipe, device, **options)
        nl = int(self.settings["noise_level"])
        if not 0 <= nl <= int(pipe.config.max_noise_level):
            raise ValueError(f"noise_level must be in 0..{pipe.config.max_noise_level}, got {nl}")
        if pipe.vae.config.latent_channels + 3 != pipe.unet.config.in_channels:
            raise ValueError(f"the UNet takes {pipe.unet.config.in_channels} channels, not latent + RGB")
        self.cfg = bool(self.settings["prompt"]) and float(self.settings["guidance_scale"]) > 1.0
        with torch.no_grad():
            pos, neg = pipe.encode_prompt(str(self.settings["prompt"]), self.device, 1, self.cfg, negative_prompt="")
        self.embeds = torch.cat([neg, pos]) if self.cfg else pos  # (1 or 2, seq, dim)

    @classmethod
    def load(cls, folder: Path):
        if importlib.util.find_spec("transformers") is None:
            raise ValueError("StableDiffusionUpscalePipeline needs its text encoder: pip install transformers")
        # lazy: this pipeline imports transformers (an optional, heavy package)
        from diffusers import StableDiffusionUpscalePipeline

        return _from_pretrained(StableDiffusionUpscalePipeline, folder)

    @property
    def scale(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def lr_multiple(self) -> int:
        return _down_multiple(self.pipe.unet.config.block_out_channels)

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.vae.config.latent_channels)

    def condition(self, y, generators):
        # noise augmentation of the LR image, one draw per sample from its own generator
        noise = torch.stack([torch.randn(y.shape[1:], generator=g) for g in generators]).to(y)
        level = torch.full((y.shape[0],), int(self.settings["noise_level"]), dtype=torch.long, device=y.device)
        return self.pipe.low_res_scheduler.add_noise(y, noise, level), level

    def predict(self, x_in, t, cond):
        image, level = cond
        b = x_in.shape[0]
        reps = 2 if self.cfg else 1
        emb = self.embeds.repeat_interleave(b, dim=0)  # (reps * B, seq, dim): [uncond..., cond...]
        inp = torch.cat([x_in.repeat(reps, 1, 1, 1), image.repeat(reps, 1, 1, 1)], dim=1)
        out = self.pipe.unet(inp, t.to(x_in.device).expand(reps * b), encoder_hidden_states=emb,
                             class_labels=level.repeat(reps)).sample
        if not self.cfg:
            return out
        uncond, text = out.chunk(2)
        return uncond + float(self.settings["guidance_scale"]) * (text - uncond)

    def decode(self, latents):
        return self.pipe.vae.decode(latents / self.pipe.vae.config.scaling_factor).sample

    def encode(self, images):
        return self.pipe.vae.encode(images).latent_dist.mode() * self.pipe.vae.config.scaling_factor


# model_index.json's "_class_name" -> its adapter
ADAPTERS: dict[str, type[PipelineAdapter]] = {
    a.pipeline_class: a for a in (LDMSuperResolutionAdapter, StableDiffusionUpscaleAdapter)
}


# ---- the scheduler's parameterisation ----------------------------------------------------------------------
def alpha_bar(sched, t: torch.Tensor) -> float:
    """abar_t of the variance-preserving chain at the current step. Schedulers with a sigma table (Euler,
    DPM-Solver) are read from it, abar = 1 / (1 + sigma^2), so that Karras or interpolated sigmas are honoured;
    Euler's ``scale_model_input`` maps its sample (x0 + sigma eps) to the VP one."""
    if isinstance(sched, (EulerDiscreteScheduler, DPMSolverMultistepScheduler)):
        i = sched.step_index  # set once the scheduler has seen this run's first step
        if i is None:
            i = sched.begin_index if sched.begin_index is not None else sched.index_for_timestep(t)
        sigma = float(sched.sigmas[i])
        return 1.0 / (1.0 + sigma**2)
    return float(sched.alphas_cumprod[int(t)])


def predicted_x0(out: torch.Tensor, x_t: torch.Tensor, abar: float, prediction_type: str) -> torch.Tensor:
    """x0 from the network output for the VP sample ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``."""
    a, s = abar**0.5, (1 - abar) ** 0.5
    if prediction_type == "epsilon":
        return (x_t - s * out) / a
    if prediction_type == "v_prediction":  # v = a eps - s x0
        return a * x_t - s * out
    return out  # "sample"


def output_for_x0(x0: torch.Tensor, x_t: torch.Tensor, abar: float, prediction_type: str) -> torch.Tensor:
    """The network output that a scheduler reads as predicting ``x0`` from ``x_t`` (inverse of the above)."""
    a, s = abar**0.5, max((1 - abar) ** 0.5, 1e-8)
    eps = (x_t - a * x0) / s
    if prediction_type == "epsilon":
        return eps
    if prediction_type == "v_prediction":
        return a * eps - s * x0
    return x0


def _pad_to(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom / right to ``size``: reflect where the image is large enough."""
    ph, pw = size[0] - t.shape[-2], size[1] - t.shape[-1]
    if not (ph or pw):
        return t
    mode = "reflect" if ph < t.shape[-2] and pw < t.shape[-1] else "replicate"
    return F.pad(t, (0, pw, 0, ph), mode=mode)


# ---- the engine ---------------------------------------------------------------------------------------------
class DiffusersEngine:
    """A wrapped diffusers SR pipeline behind the SREngine protocol. Modes: strict (default), guided, free.
    RGB in and out; any LR size up to ``max_lr_side`` (padded internally, cropped back, never resized)."""

    modes: tuple[str, ...] = ("strict", "guided", "free")
    schedulers: tuple[str, ...] = SCHEDULERS
    channels: int = 3
    lr_shape: None = None  # any LR size up to max_lr_side
    domain: str = ""  # what it was trained on is the pipeline's business

    def __init__(self, adapter: PipelineAdapter, folder: Path, weights_sha256: dict[str, str], *,
                 name: str | None = None, max_lr_side: int = 128, batch_size: int = 8,
                 projection_tol: float = 1e-6, kernel: str = "bicubic"):
        self.adapter = adapter
        self.folder = Path(folder)
        self.name = name or self.folder.name
        self.scale = adapter.scale
        self.kernel = kernel  # the operator D that consistency is measured and enforced against
        self.weights_sha256 = weights_sha256  # relative path -> SHA-256 of every safetensors file
        digest = hashlib.sha256("".join(f"{p}:{h}\n" for p, h in sorted(weights_sha256.items())).encode())
        self.checkpoint_sha256 = digest.hexdigest()  # one figure for exports: over the files' hashes
        self.max_lr_side = max_lr_side  # larger LR images are refused (configurable)
        self.batch_size = batch_size  # samples per network batch
        self.projection_tol = projection_tol  # max |D x - y| on [0, 1] that the strict projection iterates to
        self.prediction_type = adapter.pipe.scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r} in the pipeline's scheduler")

    @property
    def config(self) -> dict:
        """The engine config recorded with every bank (provenance)."""
        return {"engine": "diffusers", "name": self.name, "pipeline_class": self.adapter.pipeline_class,
                "folder": str(self.folder), "scale": self.scale, "channels": self.channels, "kernel": self.kernel,
                "scheduler": type(self.adapter.pipe.scheduler).__name__, "prediction_type": self.prediction_type,
                "options": dict(self.adapter.settings), "weights_sha256": dict(self.weights_sha256),
                "checkpoint_sha256": self.checkpoint_sha256, "max_lr_side": self.max_lr_side,
                "projection_tol": self.projection_tol, "diffusers_version": diffusers.__version__}

    def __repr__(self) -> str:
        return f"DiffusersEngine({self.name!r}, {self.adapter.pipeline_class}, scale={self.scale})"

    @property
    def option_names(self) -> tuple[str, ...]:
        """The pipeline options this engine takes (StableDiffusionUpscalePipeline: prompt, ...; LDM: none)."""
        return tuple(self.adapter.options)

    def with_options(self, **options) -> DiffusersEngine:
        """This engine with other pipeline options (e.g. a project's prompt): the same pipeline, weights shared,
        not copied or reloaded. Unknown options are a ValueError."""
        _check_options(type(self.adapter), options)
        adapter = type(self.adapter)(self.adapter.pipe, device=str(self.adapter.device),
                                     **{**self.adapter.settings, **options})
        return DiffusersEngine(adapter, self.folder, self.weights_sha256, name=self.name,
                               max_lr_side=self.max_lr_side, batch_size=self.batch_size,
                               projection_tol=self.projection_tol, kernel=self.kernel)

    # ---- schedules -----------------------------------------------------------------------------------------
    def make_scheduler(self, name: SchedulerName = "ddim"):
        """A fresh diffusers scheduler of the chosen family on the pipeline's trained chain (its config)."""
        classes = {"ddim": DDIMScheduler, "dpmsolver": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}
        if name not in classes:
            raise ValueError(f"unknown scheduler {name!r}; expected one of {SCHEDULERS}")
        return classes[name].from_config(self.adapter.pipe.scheduler.config)

    # ---- sampling ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def p_sample_loop(self, y: torch.Tensor, generators: list[torch.Generator], deg: Degradation, *,
                      steps: int, scheduler: str, timesteps: Sequence[int] | None, start_step: int | None,
                      tau: float, guided: bool) -> torch.Tensor:
        """The reverse process for one batch: ``y`` (1, 3, h, w) on [0, 1] -> HR samples (B, 3, h*s, w*s) on [0, 1].

        The latent grid is the LR grid padded (reflect) to a multiple of what the UNet's downsampling needs;
        everything is cropped back after decoding.
        """
        ad, dev = self.adapter, self.adapter.device
        b, (h, w), s = len(generators), y.shape[-2:], self.scale
        m = ad.lr_multiple
        hp, wp = -(-h // m) * m, -(-w // m) * m
        sched = self.make_scheduler(scheduler)  # fresh: schedulers keep per-run state
        schedule = set_schedule(sched, steps, timesteps, start_step)
        # each sample's first draw from its own generator: its starting noise (then any the condition needs)
        noise = torch.stack([torch.randn((ad.latent_channels, hp, wp), generator=g) for g in generators])
        noise = noise.to(dev) * tau
        y_dev = y.to(dev)
        cond = ad.condition(_pad_to(y_dev * 2 - 1, (hp, wp)).expand(b, -1, -1, -1), generators)
        if start_step:  # InvSR-style: from the minimum-norm consistent image D^+ y, noised to that step
            x_start = deg.pinv(y.double()).clamp(0, 1).float().to(dev) * 2 - 1
            z0 = ad.encode(_pad_to(x_start, (hp * s, wp * s))).expand(b, -1, -1, -1)
            latents = sched.add_noise(z0, noise, schedule[:1])
        else:
            latents = noise * sched.init_noise_sigma
        extra = {"generator": generators} if "generator" in inspect.signature(sched.step).parameters else {}
        for t in schedule:
            x_in = sched.scale_model_input(latents, t)
            out = ad.predict(x_in, t, cond)
            if guided:
                out = self._ddnm(out, x_in, t, sched, y_dev, deg)
            latents = sched.step(out, t, latents, **extra).prev_sample
        img = ad.decode(latents)[..., : h * s, : w * s]
        return ((img.float().cpu() + 1) / 2).clamp(0, 1)

    def _ddnm(self, out, x_in, t, sched, y, deg: Degradation) -> torch.Tensor:
        """DDNM step: decode the predicted x0, replace its range-space part, ``x0 + D^+(y - D x0)``, re-encode,
        and return the model output that predicts the corrected x0 (the padding is left as decoded)."""
        abar = alpha_bar(sched, t)
        x0 = predicted_x0(out, x_in, abar, self.prediction_type)
        img = self.adapter.decode(x0)
        hh, ww = deg.hr_size
        u = ((img[..., :hh, :ww] + 1) / 2).clamp(0, 1).double()
        u = deg.range_step(u, y.double())
        img = img.clone()
        img[..., :hh, :ww] = (u * 2 - 1).to(img.dtype)
        return output_for_x0(self.adapter.encode(img), x_in, abar, self.prediction_type)

    @torch.no_grad()
    def sample_bank(self, lr: Any, n: int = 64, steps: int = 8, seed: int = 0, *, mode: str | None = None,
                    tau: float = 1.0, timesteps: Sequence[int] | None = None, start_step: int | None = None,
                    scheduler: SchedulerName = "ddim", progress: bool = False) -> Bank:
        """Generate ``n`` RGB HR samples for one LR image.

        Args:
            lr: uint8 (H, W, 3), float (H, W, 3) on [0, 1], or an RGB PIL image; any size up to ``max_lr_side``.
            n: samples; steps: scheduler steps (1 .. training length); seed: the bank's seed (sample i gets
                ``sample_seeds(seed, n)[i]``).
            mode: "strict" (default), "guided" or "free".
            tau: temperature of the starting Gaussian.
            timesteps: an explicit strictly decreasing list ("dpmsolver" or "euler"; DDIM assumes even spacing).
            start_step: start at this index of the schedule from D^+ y noised to that step.
            scheduler: "ddim", "dpmsolver" or "euler" (diffusers' classes on the pipeline's trained chain).
        """
        mode = check_mode(mode, self.modes)
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {scheduler!r}; expected one of {SCHEDULERS}")
        check_bank_args(n, tau)
        t0 = time.perf_counter()
        y_np = as_lr_array(lr, self.channels, self.max_lr_side)  # (3, h, w) float64 on [0, 1]
        y = torch.from_numpy(y_np).float()[None]
        seeds = sample_seeds(int(seed), int(n))
        h, w = y.shape[-2:]
        deg = get_degradation((h * self.scale, w * self.scale), self.scale, self.kernel)
        images, residuals = [], []
        batches = range(0, int(n), self.batch_size)
        if progress:
            batches = tqdm(batches, desc=f"bank {self.name}", total=len(batches))
        for start in batches:
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds[start : start + self.batch_size]]
            x = self.p_sample_loop(y, gens, deg, steps=steps, scheduler=scheduler, timesteps=timesteps,
                                   start_step=start_step, tau=tau, guided=mode == "guided")
            if mode in ("strict", "guided"):
                proj = deg.project(x.double(), y.double(), tol=self.projection_tol)
                x = proj.x
                residuals.append(proj.residual.numpy())
            images.append(to_uint8(x))
        images_np = np.concatenate(images)
        return Bank(
            images=images_np,
            seeds=seeds,
            lr_psnr=lr_psnr_batch(images_np, np.moveaxis(y_np, 0, -1), self.scale, self.kernel),
            flow_consistency=None,  # this engine has no flow: no flow check exists
            projection_residual=np.concatenate(residuals).astype(np.float64) if residuals else None,
            mode=mode,
            steps=len(timesteps) if timesteps is not None else int(steps),
            scheduler=scheduler,
            model=self.name,
            seconds=time.perf_counter() - t0,
            settings={"tau": tau, "timesteps": list(map(int, timesteps)) if timesteps is not None else None,
                      "start_step": start_step, "seed": int(seed), **self.adapter.settings},
        )

    # ---- ensembles -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def ensemble(self, images: np.ndarray, lr: Any, weights: Sequence[float] | None = None, *,
                 reproject: Literal["auto", "always", "never"] = "auto") -> EnsembleReport:
        """Pixel mean of chosen samples (LDM-SS), checked against D (LR-PSNR); ``flow_consistency`` is None
        because this engine has no flow."""
        y_np = as_lr_array(lr, self.channels, self.max_lr_side)
        return ensemble_of(images, y_np, self.scale, self.kernel, weights=weights, reproject=reproject, flow_y=None)


# ---- loading ------------------------------------------------------------------------------------------------
def read_model_index(folder: Path) -> tuple[dict, type[PipelineAdapter]]:
    """``model_index.json`` of a pipeline folder and the adapter for its class; ValueError for anything else."""
    if not folder.is_dir():
        raise ValueError(f"diffusers pipeline folder {str(folder)!r} does not exist or is not a folder")
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ValueError(f"{folder} has no model_index.json: give a folder written by pipeline.save_pretrained")
    try:
        index = json.loads(index_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{index_path} cannot be read as JSON: {err}") from err
    cls = index.get("_class_name") if isinstance(index, dict) else None
    if cls not in ADAPTERS:
        raise ValueError(f"{folder} holds a {cls or 'unnamed'} pipeline, not an image-conditioned "
                         f"super-resolution pipeline this engine supports ({', '.join(ADAPTERS)})")
    return index, ADAPTERS[cls]


def weight_files(folder: Path, index: dict) -> dict[str, str]:
    """SHA-256 of every safetensors file of the pipeline's components. A component that has only pickled
    weights (.bin, .ckpt, ...) is refused: unpickling can run arbitrary code."""
    out: dict[str, str] = {}
    for comp, spec in sorted(index.items()):
        if comp.startswith("_") or not isinstance(spec, list) or spec[0] is None or not (folder / comp).is_dir():
            continue
        files = [p for p in sorted((folder / comp).rglob("*")) if p.is_file()]
        safe = [p for p in files if p.suffix == ".safetensors"]
        pickled = [p.name for p in files if p.suffix in PICKLED_SUFFIXES]
        if pickled and not safe:
            raise ValueError(f"component {comp!r} of {folder} has only pickled weights ({', '.join(pickled)}); "
                             "pickled weights can run code when loaded, so they are refused. Convert them once, "
                             "where you trust them: pipe.save_pretrained(dir, safe_serialization=True)")
        out.update({str(p.relative_to(folder)): sha256_file(p) for p in safe})
    return out


def _check_options(adapter_cls: type[PipelineAdapter], options: dict) -> None:
    unknown = set(options) - set(adapter_cls.options)
    if unknown:
        raise ValueError(f"{adapter_cls.pipeline_class} takes no option(s) {sorted(unknown)}; "
                         f"it takes {sorted(adapter_cls.options) or 'none'}")


def load_diffusers_engine(folder: str | Path, *, scale: int | None = None, name: str | None = None,
                          max_lr_side: int = 128, batch_size: int = 8, projection_tol: float = 1e-6,
                          kernel: str = "bicubic", device: str = "cpu", **options) -> DiffusersEngine:
    """Load a local pipeline folder (``load_engine("diffusers:/dir")``). ``options`` are the pipeline class's
    own settings (StableDiffusionUpscalePipeline: ``prompt``, ``guidance_scale``, ``noise_level``)."""
    if not str(folder).strip():
        raise ValueError("give the pipeline's folder: diffusers:/path/to/pipeline")
    folder = Path(folder).expanduser().resolve()
    index, adapter_cls = read_model_index(folder)
    _check_options(adapter_cls, options)
    hashes = weight_files(folder, index)
    pipe = adapter_cls.load(folder)
    pipe.set_progress_bar_config(disable=True)
    engine = DiffusersEngine(adapter_cls(pipe, device=device, **options), folder, hashes, name=name,
                             max_lr_side=max_lr_side, batch_size=batch_size, projection_tol=projection_tol,
                             kernel=kernel)
    if scale is not None and int(scale) != engine.scale:
        raise ValueError(f"pipeline {engine.name!r} upscales x{engine.scale}, not x{scale}")
    return engine
