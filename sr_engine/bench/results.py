"""The benchmark's results as dataclasses: one row per method and setting (digits: :class:`BenchRow`, plates:
:class:`PlateBenchRow`), the plates' ambiguity rows, and what a run returns (:class:`BenchResult`,
:class:`PlateResult`). The digits' ambiguity rows are :class:`sr_engine.bench.raters.AmbiguityRow`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..eval.digits import EvalRow
from ..eval.plates import PlateEvalRow
from .raters import AmbiguityRow


@dataclass
class BenchRow(EvalRow):
    """One method at one setting and scale (EvalRow's metrics, then these)."""

    scale: int
    family: str
    steps: int  # sampling steps (0: not a sampler)
    tau: float  # temperature (prior only)
    nfe: int  # network evaluations per sample (see methods.py)
    timing_n: int  # samples of the timed bank (seconds_per_bank); 1 for one-answer methods
    peak_rss_mib: float  # peak RSS this family adds to a clean interpreter, one bank (memory.py; NaN: not measured)


@dataclass
class BenchResult:
    rows: list[BenchRow]
    ambiguity: list[AmbiguityRow]
    timing: list[dict]  # scale, family, n, seconds
    files: dict[str, Path] = field(default_factory=dict)
    rss_floor_mib: float = float("nan")  # the same process without loading or sampling anything
    plates: PlateResult | None = None  # the plates section's result, when it ran


@dataclass
class PlateBenchRow(PlateEvalRow):
    """One method at one setting on the plates (PlateEvalRow's metrics, then these)."""

    scale: int
    family: str
    steps: int
    tau: float
    nfe: int
    timing_n: int


@dataclass
class PlateAmbiguityRow:
    method: str  # whose bank the raters pick from
    bank_n: int
    images: int
    ambiguous_images: int
    char_ensemble: float  # the judge's character accuracy on the raters' ensemble
    char_single: float  # ... on one random sample of the bank (its first)
    char_regression: float
    char_bicubic: float
    char_hr: float
    plate_ensemble: float  # whole plates right
    plate_single: float
    plate_regression: float
    plate_bicubic: float
    plate_hr: float
    amb_char_ensemble: float  # character accuracy on the ambiguous subset
    amb_char_single: float
    amb_char_regression: float
    amb_char_bicubic: float
    ensemble_lr_psnr_mean: float  # LR-PSNR of the ensembles (exact = 100 dB)


@dataclass
class PlateResult:
    rows: list[PlateBenchRow]
    ambiguity: list[PlateAmbiguityRow]
    files: dict
