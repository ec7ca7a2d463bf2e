"""Banks of consistent samples: the flow engine, its loader registry, and input validation.

    from sr_engine import load_engine
    eng = load_engine("mnist-x4")
    bank = eng.sample_bank(lr, n=64, steps=8, seed=0)   # bank.images uint8 (64, 28, 28)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from PIL import Image

from .data import data_dir
from .degradation import get_degradation
from .ensemble import EnsembleReport, ensemble_of
from .flow import FlowConfig, PseudoInverseFlow, grid_to_zs
from .kernel_diffusion import KernelDDPMConfig, build_unet, p_sample_loop
from .metrics import flow_consistency, lr_psnr_batch

Mode = Literal["strict", "flow", "prior", "guided", "free"]
MODES: tuple[str, ...] = ("strict", "flow", "prior", "guided", "free")  # every engine's modes, one enum


@dataclass
class Bank:
    """A bank of HR samples for one LR image.

    images: uint8 (n, H*s, W*s) or (n, H*s, W*s, 3).
    seeds: int64 (n,); ``sample_bank(lr, n=1, seed=seeds[i])`` reproduces sample i.
    lr_psnr: (n,) LR-PSNR in dB (NTIRE; 100 = exact).
    flow_consistency: (n,) ``||y_hat - y||^2 / dim y`` from the flow's forward pass, or None (no flow).
    projection_residual: (n,) max |D x - y| on [0, 1] where the strict projection ran, else None.
    """

    images: np.ndarray
    seeds: np.ndarray
    lr_psnr: np.ndarray
    flow_consistency: np.ndarray | None
    projection_residual: np.ndarray | None
    mode: str
    steps: int
    scheduler: str
    model: str
    seconds: float
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


@runtime_checkable
class SREngine(Protocol):
    """What the store and the app call; the flow engine and a wrapped diffusers pipeline both satisfy it."""

    name: str
    scale: int
    modes: tuple[str, ...]

    def sample_bank(self, lr: Any, n: int = 64, steps: int = 8, seed: int = 0, **kwargs) -> Bank: ...

    def ensemble(self, images: np.ndarray, lr: Any, weights: Sequence[float] | None = None) -> EnsembleReport: ...


def sample_seeds(seed: int, n: int) -> np.ndarray:
    """Per-sample seeds of a bank seeded ``seed``: sample 0 carries ``seed`` itself, sample i >= 1 a 63-bit seed
    drawn from (seed, i) by ``numpy.random.SeedSequence``. So ``n=1, seed=seeds[i]`` reproduces sample i, and
    banks with different seeds share no sample."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = seed if i == 0 else int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0] >> 1)
    return out


def as_lr_array(lr: Any, channels: int, max_side: int) -> np.ndarray:
    """Validate an LR image: uint8 ``(H, W)`` / ``(H, W, 3)`` array, float array on [0, 1], or a PIL image.

    Returns float64 ``(C, H, W)`` on [0, 1]. Raises ``ValueError`` for what cannot be used; never resizes.
    """
    if isinstance(lr, Image.Image):
        if lr.mode not in ("L", "RGB"):
            raise ValueError(f"PIL image mode {lr.mode!r} is not supported; give 'L' or 'RGB'")
        lr = np.asarray(lr)
    arr = np.asarray(lr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"LR image must be (H, W) or (H, W, 3), got shape {arr.shape}")
    got_c = 1 if arr.ndim == 2 else 3
    if got_c != channels:
        raise ValueError(f"this model takes {channels}-channel images, got {got_c} channels")
    if arr.size == 0 or min(arr.shape[:2]) == 0:
        raise ValueError("LR image is empty")
    if max(arr.shape[:2]) > max_side:
        raise ValueError(f"LR image {arr.shape[:2]} is larger than the limit of {max_side} pixels a side")
    if arr.dtype == np.uint8:
        f = arr.astype(np.float64) / 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError("LR image contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError("a float LR image must lie in [0, 1]")
        f = arr.astype(np.float64)
    else:
        raise ValueError(f"LR image dtype {arr.dtype} is not supported; give uint8 or float on [0, 1]")
    return f[None] if f.ndim == 2 else np.moveaxis(f, -1, 0)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) on [0, 1] -> uint8 (B, H, W) or (B, H, W, 3)."""
    a = np.round(x.clamp(0, 1).double().numpy() * 255).astype(np.uint8)
    return a[:, 0] if a.shape[1] == 1 else np.moveaxis(a, 1, -1)


def _from_uint8(images: np.ndarray, channels: int) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255.0)
    return t[:, None] if channels == 1 else t.permute(0, 3, 1, 2)


class FlowEngine:
    """Flow pseudoinverse + kernel-space DDPM. Modes: strict (default; DDPM + exact projection), flow (DDPM,
    no projection), prior (z ~ N(0, tau^2 I), no projection)."""

    modes: tuple[str, ...] = ("strict", "flow", "prior")

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
        from dataclasses import asdict

        from .kernel_diffusion import config_dict

        return {"engine": "flow", "name": self.name, "scale": self.scale, "channels": self.channels,
                "kernel": self.kernel, "flow": asdict(self.flow.config), "ddpm": config_dict(self.ddpm_config),
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
            timesteps / start_step / scheduler: see :func:`sr_engine.kernel_diffusion.p_sample_loop`.
            progress: show a progress bar over batches.
        """
        mode = mode or "strict"
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} is not supported by this engine; it supports {self.modes}")
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
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
            from tqdm import tqdm

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
            u8 = _to_uint8(x)
            images.append(u8)
            flow_cons.append(flow_consistency(self.flow(_from_uint8(u8, self.channels)).y, yb).numpy())
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


# ---- registry ------------------------------------------------------------------------------------------
def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def list_models() -> list[str]:
    """Names of the shipped models found on disk (``data/checkpoints/<name>.pt``)."""
    d = checkpoints_dir()
    return sorted(p.stem for p in d.glob("*.pt")) if d.is_dir() else []


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _flow_engine_from_state(st: dict, path: Path, **engine_kwargs) -> FlowEngine:
    fcfg = dict(st["flow_config"])
    fcfg["hr_size"] = tuple(fcfg["hr_size"])
    flow = PseudoInverseFlow(FlowConfig(**fcfg))
    flow.load_state_dict(st["flow_state"])
    dcfg = dict(st["ddpm_config"])
    dcfg["block_out_channels"] = tuple(dcfg["block_out_channels"])
    ddpm_config = KernelDDPMConfig(**dcfg)
    unet = build_unet(ddpm_config)
    unet.load_state_dict(st["unet_state"])
    lr_shape = st.get("lr_shape")
    if lr_shape is None and st.get("name", "").startswith("mnist-"):  # shipped before the field existed
        lr_shape = [n // flow.config.scale for n in fcfg["hr_size"]]
    engine_kwargs.setdefault("lr_shape", lr_shape)
    engine_kwargs.setdefault("domain", st.get("domain", "mnist" if st.get("name", "").startswith("mnist-") else ""))
    return FlowEngine(st.get("name", path.stem), flow, unet, ddpm_config, checkpoint_sha256=_sha256(path),
                      train_info=st.get("train_info"), **engine_kwargs)


# a checkpoint's "engine" field -> the function that builds that engine from the loaded state
ENGINE_LOADERS: dict[str, Any] = {"flow": _flow_engine_from_state}


def load_engine(name_or_path: str, *, scale: int | None = None, **engine_kwargs) -> SREngine:
    """Load a shipped model by name (``list_models()``), a checkpoint path, or ``"diffusers:/dir"``.

    ``scale``, when given, must be the scale the model was trained for. Extra keywords (``max_lr_side``,
    ``batch_size``, ``projection_tol``) configure the engine; a diffusers pipeline also takes ``device`` and its
    class's own options (``prompt``, ...): see ``sr_engine.diffusers_engine.load_diffusers_engine``.
    """
    if name_or_path.startswith("diffusers:"):
        from .diffusers_engine import load_diffusers_engine  # lazy: pipeline classes are heavy to import

        return load_diffusers_engine(name_or_path[len("diffusers:"):], scale=scale, **engine_kwargs)
    path = Path(name_or_path)
    if not path.is_file():
        path = checkpoints_dir() / f"{name_or_path}.pt"
    if not path.is_file():
        raise ValueError(f"no model {name_or_path!r}; shipped models: {list_models()}")
    # weights_only: a checkpoint holds tensors and plain configs, nothing that unpickles code
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or one that would need to unpickle code
        raise ValueError(f"{path} cannot be read as an sr_engine checkpoint: {err}") from err
    kind = st.get("engine") if isinstance(st, dict) else None
    if kind not in ENGINE_LOADERS:
        raise ValueError(f"{path} is not an sr_engine checkpoint (engine field {kind!r})")
    engine = ENGINE_LOADERS[kind](st, path, **engine_kwargs)
    if scale is not None and int(scale) != engine.scale:
        raise ValueError(f"model {engine.name!r} was trained for x{engine.scale}, not x{scale}")
    return engine
