"""Settings of the benchmark and of its baselines: the full setting, the ``--quick`` one (CI) and the tiny one
the tests use. Each is one dataclass with a comment on every default; the baselines' checkpoints store theirs.

Evaluation images are always the stated subset of :func:`sr_engine.eval.digits.eval_subset` (the first
``per_digit`` evaluation rows of each digit, ``i % 500 >= 400``); baselines and simulated raters train on the
training rows only (raters on one half, the judge on the other).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import ConfigMixin
from ..data import data_dir

SHIPPED_ENGINES: dict[int, str] = {4: "mnist-x4", 8: "mnist-x8"}


@dataclass
class BaselineConfig(ConfigMixin):
    """The baselines of one benchmark setting (trained by ``python -m sr_engine benchmark train-baselines``)."""

    scales: tuple[int, ...] = (4, 8)  # one regression net and one pixel DDPM per scale
    reg_width: int = 48  # regression net: feature channels
    reg_blocks: int = 6  # regression net: residual blocks
    reg_steps: int = 4000  # regression net: optimiser steps
    # pixel-space DDPM: UNet widths and chain as the kernel DDPM (KernelDDPMConfig overrides); same budget
    ddpm: dict = field(default_factory=lambda: {"block_out_channels": (32, 64), "layers_per_block": 2,
                                                "norm_num_groups": 8})
    ddpm_steps: int = 10000  # pixel DDPM: optimiser steps (the kernel DDPMs' retraining uses 10000 at x4)
    batch_size: int = 64  # HR digits per step (both nets)
    lr: float = 5e-4  # peak learning rate (linear warm-up, cosine decay to 5%)
    warmup: int = 200  # warm-up steps
    ema_decay: float = 0.999  # EMA of the pixel UNet (the EMA weights are exported)
    shift: int = 1  # random translation of HR digits by up to this many pixels
    raters: int = 3  # simulated raters: classifiers on training half 0, seeds 0 .. raters-1
    classifier_epochs: int = 12  # epochs of each rater and of the judge
    classifier_rows: int = 0  # 0: every row of the half; else only the first N (tiny settings)
    seed: int = 0  # data order and initialisation
    device: str = "cpu"  # torch device of the regression net's and pixel DDPM's training (the raters: CPU)
    ckpt_every: int = 500  # steps between resumable checkpoints
    work_dir: str = "runs/baselines"  # resumable training state (not committed)
    export_dir: str = ""  # exported weights the benchmark loads; "" = data/baselines (committed)
    plates_train: int = 0  # training plates rendered for the plates nets; 0 = as the plates-x4 engine (24000)
    plates_batch_size: int = 32  # plates nets: crops per step (as the plates-x4 engine)
    plates_ddpm_steps: int = 6000  # plates pixel DDPM: the steps the plates-x4 kernel DDPM had

    def export_path(self) -> Path:
        return Path(self.export_dir) if self.export_dir else data_dir() / "baselines"


@dataclass
class BenchConfig(ConfigMixin):
    """One run of ``python -m sr_engine benchmark``."""

    name: str = "full"  # shown in the table's header
    scales: tuple[int, ...] = (4, 8)  # settings x4 (28x28 HR) and x8 (32x32 HR)
    engines: dict = field(default_factory=lambda: dict(SHIPPED_ENGINES))  # scale -> load_engine name or path
    per_digit: int = 8  # evaluation rows per digit (the stated subset: 80 images; 2-core CPU budget)
    max_images: int = 0  # 0: all of the subset; else only its first N images (tests)
    steps: tuple[int, ...] = (1, 2, 4, 8, 16, 50)  # step sweep of the kernel and pixel samplers
    sweep_n: int = 8  # samples per bank in the step sweep
    taus: tuple[float, ...] = (0.6, 0.8, 1.0)  # temperatures of flow-only (prior) sampling
    ref_steps: int = 8  # steps of the samplers in the ambiguity study and the time-vs-samples plot
    ambiguity_n: int = 64  # bank size the simulated raters pick from
    k_picks: int = 5  # picks per rater (its k most confident samples)
    ensemble_size: int = 5  # the m most-voted samples averaged into the ensemble
    ambiguous_confidence: float = 0.5  # fixed in advance: judge confidence on bicubic below this = ambiguous
    timing_n: int = 64  # samples of the bank whose wall time is reported
    timing_ns: tuple[int, ...] = (1, 4, 16, 64)  # bank sizes of the time-vs-samples plot
    timing_repeats: int = 3  # wall times are the median of this many runs (after one untimed warm-up call)
    memory: bool = True  # peak RSS of a fresh subprocess per method (about 5-10 s each)
    threads: int = 1  # torch CPU threads (per process)
    jobs: int = 1  # scales run in this many worker processes (2 on a 2-core machine halves the wall time)
    seed: int = 0  # bank seeds are seed + evaluation row
    domains: tuple[str, ...] = ("mnist", "plates")  # mnist: the digits at each scale; plates: the plates section
    plates: int = 12  # evaluation plates of the plates section (the first of eval_plates())
    plates_engine: str = "plates-x4"  # its kernel-space engine (x4)
    plates_sweep_n: int = 8  # samples per bank in its step sweep
    plates_timing_repeats: int = 1  # its wall times: one run after the warm-up (a 32x128 pixel-DDPM bank at 50
    #                                 steps takes minutes on one core; the digits take the median of timing_repeats)
    readers: str = ""  # folder with plates-reader.pt (judge) and rater-*.pt; "" = data/readers
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    train_baselines: bool = False  # train missing baselines first (quick); the full run loads committed ones
    out: str = "results/benchmark"  # results folder


def quick_config(out: str = "results/quick") -> BenchConfig:
    """CI setting: tiny baselines trained on the spot, 20 evaluation images, 4-sample banks, few steps.
    Its numbers test the pipeline; they are not results."""
    base = BaselineConfig(reg_width=16, reg_blocks=2, reg_steps=150, batch_size=32, warmup=20,
                          ddpm={"block_out_channels": (16, 32), "layers_per_block": 1, "norm_num_groups": 4},
                          ddpm_steps=300, raters=2, classifier_epochs=2, classifier_rows=1000, ckpt_every=100,
                          plates_train=512, plates_batch_size=8, plates_ddpm_steps=60,
                          work_dir=str(Path(out) / "baselines-work"), export_dir=str(Path(out) / "baselines"))
    return BenchConfig(name="quick", per_digit=2, steps=(1, 2, 4), sweep_n=4, taus=(0.6, 1.0), ref_steps=4,
                       ambiguity_n=8, k_picks=2, ensemble_size=2, timing_n=8, timing_ns=(1, 4, 8),
                       timing_repeats=1, plates=4, plates_sweep_n=2, baselines=base, train_baselines=True, out=out)


def tiny_config(out: str, engines: dict, scale: int = 4) -> BenchConfig:
    """The tests' setting: a few images, 2-sample banks, 1-2 steps, baselines trained for a handful of steps; digits
    only (``replace(cfg, domains=("mnist", "plates"), plates=2)`` adds the plates section with the shipped engine)."""
    q = quick_config(out)
    base = replace(q.baselines, scales=(scale,), reg_width=8, reg_blocks=1, reg_steps=3, batch_size=8, warmup=1,
                   ddpm={"block_out_channels": (8, 16), "layers_per_block": 1, "norm_num_groups": 4},
                   ddpm_steps=3, raters=2, classifier_epochs=1, classifier_rows=64, ckpt_every=2, plates_train=64,
                   plates_ddpm_steps=3)
    return replace(q, name="tiny", scales=(scale,), engines=dict(engines), per_digit=1, max_images=3,
                   steps=(1, 2), sweep_n=2, taus=(1.0,), ref_steps=2, ambiguity_n=3, k_picks=1, ensemble_size=2,
                   timing_n=2, timing_ns=(1, 2), memory=False, domains=("mnist",), baselines=base)


def plates_baselines(base: BaselineConfig) -> BaselineConfig:
    """The plates baselines of a setting (x4): ``plates_batch_size`` crops per step, the pixel DDPM trained for
    ``plates_ddpm_steps`` (the full setting: 6,000 of 32, as the plates-x4 kernel DDPM; data/checkpoints/plates-x4.md).
    """
    return replace(base, scales=(4,), batch_size=base.plates_batch_size, ddpm_steps=base.plates_ddpm_steps)
