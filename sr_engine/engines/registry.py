"""Which engine a name loads: shipped models (``data/checkpoints/<name>.pt``), checkpoint paths, and local
diffusers pipelines (``"diffusers:/dir"``). A checkpoint's ``engine`` field picks the loader; its ``format`` is
checked first, with an error that names the file and the format expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable

import torch

from ..data import data_dir
from ..models.declip import DeclipConfig, DeclipNet
from ..models.flow import FlowConfig, PseudoInverseFlow
from ..models.kernel_diffusion import KernelDDPMConfig, build_unet
from .base import SREngine, sha256_file
from .diffusers_engine import load_diffusers_engine
from .flow_engine import FlowEngine

# the engine checkpoint format number this package writes (sr_engine.train.export_engine) and reads
CHECKPOINT_FORMAT = 1
# format number -> the keys a checkpoint of it must hold
CHECKPOINT_KEYS: dict[int, frozenset[str]] = {
    1: frozenset({"engine", "flow_config", "flow_state", "ddpm_config", "unet_state"}),
}
# the format field as the shipped checkpoints spell it (their bytes stay as they are: model cards quote their SHA-256)
FORMAT_NAMES: dict[str, int] = {"sr_engine.flow-kernel-ddpm/1": 1}
DIFFUSERS_PREFIX = "diffusers:"


def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def list_models() -> list[str]:
    """Names of the shipped models found on disk (``data/checkpoints/<name>.pt``)."""
    d = checkpoints_dir()
    return sorted(p.stem for p in d.glob("*.pt")) if d.is_dir() else []


def check_checkpoint(st: Any, path: Path) -> int:
    """The format number of a loaded checkpoint, or a ValueError naming ``path`` and the format expected. The
    shipped files' ``"sr_engine.flow-kernel-ddpm/1"`` is format 1; a file without a ``format`` field is format 1
    when it holds format 1's keys."""
    expected = f"a dict with format {CHECKPOINT_FORMAT} and keys {sorted(CHECKPOINT_KEYS[CHECKPOINT_FORMAT])}"
    if not isinstance(st, dict):
        raise ValueError(f"{path} is not an sr_engine checkpoint: expected {expected}, got a {type(st).__name__}")
    raw = st.get("format", CHECKPOINT_FORMAT)
    fmt = FORMAT_NAMES.get(raw, raw) if isinstance(raw, str) else raw
    if isinstance(fmt, bool) or fmt not in CHECKPOINT_KEYS:
        raise ValueError(f"{path} has checkpoint format {raw!r}; this version reads format(s) "
                         f"{sorted(CHECKPOINT_KEYS)}: {expected}")
    missing = sorted(CHECKPOINT_KEYS[fmt] - set(st))
    if missing:
        raise ValueError(f"{path} is not an sr_engine checkpoint: expected {expected}; missing {missing}")
    return fmt


def flow_engine_from_state(st: dict, path: Path, **engine_kwargs) -> FlowEngine:
    """Build a :class:`FlowEngine` from a loaded checkpoint (format 1; ``declip_config`` and ``declip_state``, when
    present, are its de-clip estimator)."""
    fcfg = FlowConfig.from_dict(st["flow_config"])
    flow = PseudoInverseFlow(fcfg)
    flow.load_state_dict(st["flow_state"])
    ddpm_config = KernelDDPMConfig.from_dict(st["ddpm_config"])
    unet = build_unet(ddpm_config)
    unet.load_state_dict(st["unet_state"])
    lr_shape = st.get("lr_shape")
    if lr_shape is None and st.get("name", "").startswith("mnist-"):  # shipped before the field existed
        lr_shape = [n // fcfg.scale for n in fcfg.hr_size]
    engine_kwargs.setdefault("lr_shape", lr_shape)
    engine_kwargs.setdefault("domain", st.get("domain", "mnist" if st.get("name", "").startswith("mnist-") else ""))
    if "declip_state" in st:  # an optional de-clip estimator (sr_engine.models.declip), trained after the DDPM
        declip = DeclipNet(DeclipConfig.from_dict(st["declip_config"]))
        declip.load_state_dict(st["declip_state"])
        engine_kwargs.setdefault("declip", declip)
    return FlowEngine(st.get("name", path.stem), flow, unet, ddpm_config, checkpoint_sha256=sha256_file(path),
                      train_info=st.get("train_info"), **engine_kwargs)


# a checkpoint's "engine" field -> the function that builds that engine from the loaded state
ENGINE_LOADERS: dict[str, Callable[..., SREngine]] = {"flow": flow_engine_from_state}


def load_engine(name_or_path: str, *, scale: int | None = None, **engine_kwargs) -> SREngine:
    """Load a shipped model by name (``list_models()``), a checkpoint path, or ``"diffusers:/dir"``.

    ``scale``, when given, must be the scale the model was trained for. Extra keywords (``max_lr_side``,
    ``batch_size``, ``projection_tol``) configure the engine; a diffusers pipeline also takes ``device`` and its
    class's own options (``prompt``, ...): see :func:`sr_engine.engines.diffusers_engine.load_diffusers_engine`.
    """
    if name_or_path.startswith(DIFFUSERS_PREFIX):
        return load_diffusers_engine(name_or_path[len(DIFFUSERS_PREFIX):], scale=scale, **engine_kwargs)
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
    check_checkpoint(st, path)
    kind = st.get("engine")
    if kind not in ENGINE_LOADERS:
        raise ValueError(f"{path} is not an sr_engine checkpoint (engine field {kind!r}; "
                         f"known: {sorted(ENGINE_LOADERS)})")
    engine = ENGINE_LOADERS[kind](st, path, **engine_kwargs)
    if scale is not None and int(scale) != engine.scale:
        raise ValueError(f"model {engine.name!r} was trained for x{engine.scale}, not x{scale}")
    return engine
