"""The consensus model's calibrated settings (the evidence prior's ``beta``, the follow term, the temperature),
fitted on calibration projects made from training data only, stored as a small JSON under ``data/consensus/`` and
read by the annotation services: ``digits-x8.json`` from MNIST training rows (:mod:`sr_engine.bench.study`),
``plates-x4.json`` from training plates (:mod:`sr_engine.bench.study_plates`).

    cfg = load_calibration()                  # digits; the uncalibrated defaults if the file is missing (logged)
    cfg = load_calibration(kind="plates")     # plates; the per-position default (PLATE_CONFIG) if missing
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .consensus import PLATE_CONFIG, ConsensusConfig
from .data import data_dir

logger = logging.getLogger(__name__)

FORMAT = 1  # bumped when the file's layout changes; the loader checks it
CALIBRATION_FILES = {"digits": ("consensus", "digits-x8.json"), "plates": ("consensus", "plates-x4.json")}
CALIBRATION_FILE = CALIBRATION_FILES["digits"]
UNCALIBRATED = {"digits": ConsensusConfig(), "plates": PLATE_CONFIG}  # when a kind's file is missing


def calibration_path(root: str | Path | None = None, kind: str = "digits") -> Path:
    if kind not in CALIBRATION_FILES:
        raise ValueError(f"kind must be one of {sorted(CALIBRATION_FILES)}, got {kind!r}")
    return Path(root or data_dir()).joinpath(*CALIBRATION_FILES[kind])


def save_calibration(path: str | Path, config: ConsensusConfig, **info: Any) -> Path:
    """Write ``{"format", "config", **info}`` (info: the command, the rows used, the figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": FORMAT, "config": config.to_dict(), **info}, indent=1) + "\n",
                    encoding="utf-8")
    return path


def load_calibration(path: str | Path | None = None, kind: str = "digits") -> ConsensusConfig:
    """The calibrated ConsensusConfig of ``kind`` (``digits`` or ``plates``; ``path`` overrides its file); the
    kind's uncalibrated defaults when the file is missing."""
    default = calibration_path(kind=kind)  # refuses an unknown kind
    path = Path(path) if path is not None else default
    if not path.is_file():
        logger.warning("no consensus calibration at %s: using the uncalibrated defaults", path)
        return UNCALIBRATED[kind]
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: calibration format {d.get('format')!r}, this version reads {FORMAT}")
    return ConsensusConfig.from_dict(d["config"])
