"""The consensus model's calibrated settings (the evidence prior's ``beta``, the follow term, the temperature),
fitted on calibration projects made from MNIST training rows only (:mod:`sr_engine.bench.study`), stored as a
small JSON under ``data/consensus/`` and read by the annotation services.

    cfg = load_calibration()          # ConsensusConfig; the uncalibrated defaults if the file is missing (logged)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .consensus import ConsensusConfig
from .data import data_dir

logger = logging.getLogger(__name__)

FORMAT = 1  # bumped when the file's layout changes; the loader checks it
CALIBRATION_FILE = ("consensus", "digits-x8.json")


def calibration_path(root: str | Path | None = None) -> Path:
    return Path(root or data_dir()).joinpath(*CALIBRATION_FILE)


def save_calibration(path: str | Path, config: ConsensusConfig, **info: Any) -> Path:
    """Write ``{"format", "config", **info}`` (info: the command, the rows used, the figures)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": FORMAT, "config": config.to_dict(), **info}, indent=1) + "\n",
                    encoding="utf-8")
    return path


def load_calibration(path: str | Path | None = None) -> ConsensusConfig:
    """The calibrated ConsensusConfig; the defaults (uncalibrated) when the file is missing."""
    path = Path(path) if path is not None else calibration_path()
    if not path.is_file():
        logger.warning("no consensus calibration at %s: using the uncalibrated defaults", path)
        return ConsensusConfig()
    d = json.loads(path.read_text(encoding="utf-8"))
    if d.get("format") != FORMAT:
        raise ValueError(f"{path}: calibration format {d.get('format')!r}, this version reads {FORMAT}")
    return ConsensusConfig.from_dict(d["config"])
