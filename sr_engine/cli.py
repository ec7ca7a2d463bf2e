"""The commands of ``python -m sr_engine {sample,evaluate,tune-strict,train,benchmark} ...``: each parses its arguments,
configures logging (timestamps; ``--log-level``) and calls the library. ``--help`` after a command lists its
options.

    python -m sr_engine sample --model mnist-x4 --lr in.png --n 64 --steps 8 --out DIR
    python -m sr_engine sample --model diffusers:/path/to/pipeline --lr photo.png --n 16 --steps 20 --mode guided \\
        --scheduler dpmsolver --out DIR     # a local diffusers SR pipeline; RGB in and out
    python -m sr_engine evaluate --model mnist-x4 --per-digit 20 --n 64 --steps 8 --out results/eval-mnist-x4
    python -m sr_engine evaluate --model plates-x4 --plates 100 --n 64 --steps 8 --out results/eval-plates-x4
    python -m sr_engine tune-strict --model mnist-x8 --rows 200 --n 8 --steps 8 --out results/tune-strict-mnist-x8
    python -m sr_engine train --model mnist-x4 --stage flow --steps 6000
    python -m sr_engine benchmark --quick
    python -m sr_engine benchmark study calibrate      # the simulated-rater study: fit on training rows ...
    python -m sr_engine benchmark study evaluate       # ... and report on evaluation rows (results/study/)
    python -m sr_engine benchmark study plates-calibrate   # the same for plates: training plates ...
    python -m sr_engine benchmark study plates-evaluate    # ... and evaluation plates (results/study-plates/)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from . import train as train_lib
from .bench import __doc__ as BENCH_DOC
from .bench.study import StudyConfig
from .bench.study import run as run_study
from .bench.study_plates import PlateStudyConfig
from .bench.study_plates import run as run_plate_study
from .bench.baselines import train_baselines
from .bench.config import BenchConfig, plates_baselines, quick_config
from .bench.run import run_benchmark
from .bench.timing import run_timing
from .data import data_dir
from .engines.base import MODES
from .engines.diffusers_engine import SCHEDULERS as DIFFUSERS_SCHEDULERS
from .engines.registry import DIFFUSERS_PREFIX, load_engine
from .eval import digits as eval_digits
from .eval import plates as eval_plates
from .eval import strict_tuning
from .eval.figures import bank_grid
from .models.kernel_diffusion import SCHEDULERS

COMMANDS = ("train", "evaluate", "tune-strict", "sample", "benchmark")
# the flow engine's and the diffusers engine's schedulers; each engine refuses the ones it does not know
ALL_SCHEDULERS = tuple(dict.fromkeys(SCHEDULERS + DIFFUSERS_SCHEDULERS))
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure_logging(level: str = "INFO") -> None:
    """Log lines with a timestamp, the level and the module, on stderr (stdout carries the commands' product)."""
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m sr_engine {command}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, type=str.upper, help="logging threshold")
    return p


# ---- sample ---------------------------------------------------------------------------------------------------
SAMPLE_DOC = """Writes DIR/sample_000.png ... (lossless PNG), DIR/grid.png (the bank enlarged with nearest-neighbour)
and DIR/bank.json (seeds, LR-PSNR, flow consistency, settings, model provenance)."""


def sample_main(argv: list[str] | None = None) -> None:
    p = _parser("sample", SAMPLE_DOC)
    p.add_argument("--model", default="mnist-x4", help="a shipped model, a checkpoint path, or diffusers:/dir")
    p.add_argument("--lr", required=True, help="LR image (PNG/JPEG), read as grey or RGB as the model takes it")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default=None, choices=MODES)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--scheduler", default="ddim", choices=ALL_SCHEDULERS)
    p.add_argument("--timesteps", default=None, help="explicit comma-separated list, e.g. 999,600,300,100")
    p.add_argument("--start-step", type=int, default=None)
    p.add_argument("--max-lr-side", type=int, default=None, help="refuse larger LR images (engine default: 128)")
    g = p.add_argument_group("diffusers:/dir models only")
    g.add_argument("--prompt", default=None, help="text prompt, for pipelines that take one (may stay empty)")
    g.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance with a prompt")
    g.add_argument("--noise-level", type=int, default=None, help="noise augmentation of the LR (SD upscaler)")
    g.add_argument("--device", default=None, help="torch device, e.g. cuda (default cpu)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    configure_logging(a.log_level)
    torch.set_num_threads(a.threads)
    kwargs = {k: v for k, v in [("max_lr_side", a.max_lr_side)] if v is not None}
    pipeline_kwargs = {k: v for k, v in [("prompt", a.prompt), ("guidance_scale", a.guidance_scale),
                                         ("noise_level", a.noise_level), ("device", a.device)] if v is not None}
    if pipeline_kwargs and not a.model.startswith(DIFFUSERS_PREFIX):
        p.error(f"{', '.join(pipeline_kwargs)} apply to diffusers:/dir models only")
    eng = load_engine(a.model, **kwargs, **pipeline_kwargs)
    img = Image.open(a.lr)
    img = img.convert("L" if eng.channels == 1 else "RGB")
    ts = [int(t) for t in a.timesteps.split(",")] if a.timesteps else None
    cpu0 = time.process_time()  # CPU seconds of the bank: with --threads 1, little moved by other processes
    bank = eng.sample_bank(np.asarray(img), n=a.n, steps=a.steps, seed=a.seed, mode=a.mode, tau=a.tau,
                           timesteps=ts, start_step=a.start_step, scheduler=a.scheduler, progress=True)
    cpu = time.process_time() - cpu0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(bank.images):
        Image.fromarray(im).save(out / f"sample_{i:03d}.png")
    bank_grid(bank.images).save(out / "grid.png")
    meta = {"model": bank.model, "mode": bank.mode, "steps": bank.steps, "scheduler": bank.scheduler,
            "seconds": round(bank.seconds, 4), "cpu_seconds": round(cpu, 4), "settings": bank.settings,
            "seeds": bank.seeds.tolist(),
            "lr_psnr": bank.lr_psnr.tolist(),
            "flow_consistency": None if bank.flow_consistency is None else bank.flow_consistency.tolist(),
            "engine": eng.config}
    (out / "bank.json").write_text(json.dumps(meta, indent=1))
    exact = float((bank.lr_psnr >= 100).mean())
    print(f"{len(bank)} samples in {bank.seconds:.2f} s ({cpu:.2f} s CPU) -> {out}; "
          f"LR-PSNR worst {bank.lr_psnr.min():.2f} dB, "
          f"median {np.median(bank.lr_psnr):.2f} dB, exact {100 * exact:.0f}%")


# ---- evaluate -------------------------------------------------------------------------------------------------
EVALUATE_DOC = """Evaluate a model on the MNIST evaluation rows (row i with i % 500 >= 400), or a plates model on the
evaluation plates (held-out fonts and strings): see sr_engine.eval.digits and sr_engine.eval.plates.
Writes OUT.md and OUT.csv."""


def evaluate_main(argv: list[str] | None = None) -> None:
    p = _parser("evaluate", EVALUATE_DOC)
    p.add_argument("--model", default="mnist-x4")
    p.add_argument("--per-digit", type=int, default=20, help="evaluation rows per digit (max 100)")
    p.add_argument("--plates", type=int, default=100, help="plates models: evaluation plates (max 300)")
    p.add_argument("--regression", default=None, help="plates models: a regression baseline checkpoint to add")
    p.add_argument("--n", type=int, default=64, help="samples per bank")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--modes", default=None,
                   help="comma-separated; prior@T runs prior mode at temperature T")
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="write OUT.md and OUT.csv")
    p.add_argument("--figure", default=None, help="also write this PNG: HR | LR | bicubic | 8 samples | mean")
    a = p.parse_args(argv)
    configure_logging(a.log_level)
    torch.set_num_threads(a.threads)
    if load_engine(a.model).domain == "plates":
        if a.figure:
            print(f"wrote {eval_plates.plates_figure(a.model, a.figure, steps=a.steps, seed=a.seed)}")
        rows = eval_plates.evaluate_plates(a.model, a.plates, a.n, a.steps,
                                           tuple((a.modes or "strict,flow").split(",")), a.seed,
                                           regression=a.regression)
        md = eval_plates.to_markdown(rows)
    else:
        if a.figure:
            print(f"wrote {eval_digits.figure(a.model, a.figure, steps=a.steps, seed=a.seed)}")
        rows = eval_digits.evaluate(a.model, a.per_digit, a.n, a.steps,
                                    tuple((a.modes or "strict,flow,prior,prior@0.6").split(",")), a.tau, a.seed)
        md = eval_digits.to_markdown(rows)
    print(md)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(md + "\n")
        pd.DataFrame([asdict(r) for r in rows]).to_csv(out.with_suffix(".csv"), index=False)
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.csv')}")


# ---- tune-strict ----------------------------------------------------------------------------------------------
def tune_strict_main(argv: list[str] | None = None) -> None:
    p = _parser("tune-strict", strict_tuning.__doc__)
    p.add_argument("--model", default="mnist-x4")
    p.add_argument("--rows", type=int, default=200, help="training images (MNIST: rows // 10 per digit)")
    p.add_argument("--n", type=int, default=8, help="samples per image")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--declips", default=",".join(f"{d:g}" for d in strict_tuning.DECLIPS), help="grey, comma-separated")
    p.add_argument("--floors", default=",".join(f"{f:g}" for f in strict_tuning.FLOORS), help="comma-separated")
    p.add_argument("--shrinks", default=",".join(f"{t:g}" for t in strict_tuning.SHRINKS),
                   help="haar_shrink thresholds (grey), comma-separated; 0: the flow's output as decoded")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write OUT.md")
    p.add_argument("--budget", action="store_true",
                   help="instead: where the tuned strict mode loses fidelity (the HR image's own z and y in the "
                        "flow's place; strict_tuning.fidelity_budget), on the same training images")
    a = p.parse_args(argv)
    configure_logging(a.log_level)
    torch.set_num_threads(a.threads)
    if a.budget:
        eng = load_engine(a.model)
        res = strict_tuning.fidelity_budget(eng, strict_tuning.training_images(eng.domain, eng.scale, a.rows),
                                            a.n, a.steps, a.seed)
    else:
        res = strict_tuning.tune_strict(a.model, a.rows, a.n, a.steps, [float(v) for v in a.declips.split(",")],
                                        [float(v) for v in a.floors.split(",")], a.seed,
                                        [float(v) for v in a.shrinks.split(",")])
    cmd = "python -m sr_engine tune-strict " + " ".join(argv if argv is not None else sys.argv[2:])
    md = f"`{cmd}`\n\n{res.to_markdown()}"
    print(md)
    if a.out:
        out = Path(a.out).with_suffix(".md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md + "\n")
        print(f"wrote {out}")


# ---- train ----------------------------------------------------------------------------------------------------
def train_main(argv: list[str] | None = None) -> None:
    p = _parser("train", train_lib.__doc__)
    p.add_argument("--model", default="mnist-x4", choices=sorted(train_lib.PRESETS))
    p.add_argument("--stage", default="flow", choices=["flow", "ddpm", "declip", "average", "classifier", "reader"])
    p.add_argument("--reader-role", default="judge", choices=sorted(train_lib.READER_ROLES),
                   help="reader stage: the judge or a simulated rater (its --seed names it)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default="runs")
    p.add_argument("--init-from", default="",
                   help="ddpm stage: continue the kernel DDPM of this engine checkpoint (its flow, its UNet's EMA "
                        "weights as the start; a fresh optimiser and learning-rate schedule); declip stage: the "
                        "engine checkpoint whose de-clip estimator is trained (written again with it)")
    p.add_argument("--export-dir", default="", help="where the ddpm stage writes <model>.pt (default data/checkpoints)")
    p.add_argument("--pixel-loss", type=float, default=0.0,
                   help="ddpm stage: add the loss measured in pixels through the flow, with this weight (0: off)")
    p.add_argument("--flat-weight", type=float, default=0.0,
                   help="ddpm stage, with --pixel-loss: the pixel loss counts 1 + this on the HR image's flat ground "
                        "(more than 2 px from any stroke), where faint texture costs SSIM (0: off)")
    p.add_argument("--average", default="",
                   help="average stage: comma-separated engine checkpoints of --model (one flow) whose kernel DDPM "
                        "weights are averaged into <export-dir>/<model>.pt")
    a = p.parse_args(argv)
    configure_logging(a.log_level)
    torch.set_num_threads(a.threads)
    data = data_dir()
    if a.stage == "classifier":
        train_lib.train_digit_classifier(a.seed, data / "classifiers" / "mnist-cnn.pt")
        return
    if a.stage == "reader":
        name = "plates-reader.pt" if a.reader_role == "judge" else f"rater-{a.seed}.pt"
        train_lib.train_plate_reader(a.reader_role, a.seed, data / "readers" / name)
        return
    if a.stage == "average":
        paths = [q for q in a.average.split(",") if q]
        out = Path(a.export_dir or data / "checkpoints") / f"{a.model}.pt"
        try:
            print(f"wrote {train_lib.average_engines(paths, out)}")
        except ValueError as err:
            p.error(str(err))
        return
    defaults = {"flow": (6000, 5e-4), "ddpm": (20000, 5e-4), "declip": (3000, 2e-3)}[a.stage]
    cfg = train_lib.TrainConfig(model=a.model, stage=a.stage, steps=a.steps or defaults[0],
                                batch_size=a.batch_size, lr=a.lr or defaults[1], seed=a.seed,
                                ckpt_every=a.ckpt_every, threads=a.threads, work_dir=a.work_dir,
                                export_dir=a.export_dir, init_from=a.init_from,
                                pixel_loss=a.pixel_loss, flat_weight=a.flat_weight)
    if a.stage == "declip":
        print(f"wrote {train_lib.train_declip(cfg)}")
        return
    (train_lib.train_flow if a.stage == "flow" else train_lib.train_ddpm)(cfg)


# ---- benchmark ------------------------------------------------------------------------------------------------
BENCH_PARTS = ("run", "train-baselines", "timing", "study")


def benchmark_main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    part = argv.pop(0) if argv and argv[0] in BENCH_PARTS else "run"
    p = _parser(f"benchmark {part}", BENCH_DOC)
    if part == "timing":
        p.add_argument("--model", default="mnist-x4")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--repeats", type=int, default=5)
        p.add_argument("--out", default=None)
        a = p.parse_args(argv)
        configure_logging(a.log_level)
        print(run_timing(a.model, a.threads, a.repeats, a.out))
        return
    if part == "study":  # the simulated-rater study of the calibrated consensus (sr_engine.bench.study)
        p.add_argument("stage", choices=("banks", "calibrate", "evaluate", "plates-banks", "plates-calibrate",
                                         "plates-evaluate"),
                       help="banks: make and cache the banks' readings; calibrate: fit on training rows; "
                            "evaluate: report on evaluation rows; plates-*: the same on plates "
                            "(sr_engine.bench.study_plates)")
        p.add_argument("--out", default=None, help="default results/study, plates: results/study-plates")
        p.add_argument("--panels", type=int, default=None, help="simulated panels per stage")
        p.add_argument("--threads", type=int, default=1)
        a = p.parse_args(argv)
        configure_logging(a.log_level)
        torch.set_num_threads(a.threads)
        if a.stage.startswith("plates-"):
            pcfg = PlateStudyConfig() if a.panels is None else PlateStudyConfig(panels=a.panels)
            out = run_plate_study(a.stage[len("plates-"):], a.out or "results/study-plates", pcfg)
            print(json.dumps(out.get("summary", out.get("chosen", out)), indent=1, default=str))
            return
        cfg = StudyConfig() if a.panels is None else StudyConfig(panels=a.panels)
        out = run_study(a.stage, a.out or "results/study", cfg)
        print(json.dumps(out.get("summary", out.get("chosen", out)), indent=1, default=str))
        return
    p.add_argument("--quick", action="store_true", help="the CI setting: tiny baselines, tiny subsets")
    p.add_argument("--out", default=None, help="results folder (default results/benchmark, quick: results/quick)")
    p.add_argument("--baselines", default=None,
                   help="baselines folder (default data/baselines; quick: OUT/baselines)")
    p.add_argument("--work-dir", default=None, help="resumable training state (default runs/baselines)")
    p.add_argument("--scales", default=None, help="comma-separated, e.g. 4 or 4,8")
    p.add_argument("--engine", action="append", default=[], metavar="SCALE=MODEL",
                   help="kernel-space engine per scale (a shipped name or a checkpoint path), e.g. 4=mnist-x4")
    p.add_argument("--per-digit", type=int, default=None, help="evaluation rows per digit")
    p.add_argument("--no-memory", action="store_true", help="skip the per-method peak-memory subprocesses")
    p.add_argument("--reg-steps", type=int, default=None, help="regression net training steps (train-baselines)")
    p.add_argument("--ddpm-steps", type=int, default=None, help="pixel DDPM training steps (train-baselines)")
    p.add_argument("--plates", action="store_true",
                   help="train-baselines: the plates baselines (x4, crops of the training plates, batch 32)")
    p.add_argument("--only", choices=["regression", "pixel-ddpm", "raters"], default=None,
                   help="train-baselines: only this part")
    p.add_argument("--device", default="cpu", help="train-baselines: torch device of the nets (cpu, cuda)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="run the scales (and the plates) in this many processes")
    p.add_argument("--domains", default=None,
                   help="comma-separated: mnist (the digits at each scale), plates (the plates section); default both")
    p.add_argument("--plates-images", type=int, default=None, help="evaluation plates of the plates section")
    p.add_argument("--sweep-n", type=int, default=None, help="samples per bank in the step sweeps")
    a = p.parse_args(argv)
    configure_logging(a.log_level)
    torch.set_num_threads(a.threads)
    cfg = quick_config(a.out or "results/quick") if a.quick else BenchConfig(out=a.out or "results/benchmark")
    base = cfg.baselines
    if a.baselines:
        base = replace(base, export_dir=a.baselines)
    if a.reg_steps:
        base = replace(base, reg_steps=a.reg_steps)
    if a.ddpm_steps:
        base = replace(base, ddpm_steps=a.ddpm_steps, plates_ddpm_steps=a.ddpm_steps)
    if a.work_dir:
        base = replace(base, work_dir=a.work_dir)
    if a.scales:
        scales = tuple(int(s) for s in a.scales.split(","))
        cfg, base = replace(cfg, scales=scales), replace(base, scales=scales)
    engines = dict(cfg.engines)
    for spec in a.engine:
        s, _, model = spec.partition("=")
        engines[int(s)] = model
    cfg = replace(cfg, baselines=base, engines=engines, threads=a.threads, jobs=a.jobs,
                  memory=cfg.memory and not a.no_memory, per_digit=a.per_digit or cfg.per_digit,
                  plates=cfg.plates if a.plates_images is None else a.plates_images,
                  sweep_n=a.sweep_n or cfg.sweep_n, plates_sweep_n=a.sweep_n or cfg.plates_sweep_n)
    if a.domains:
        cfg = replace(cfg, domains=tuple(d.strip() for d in a.domains.split(",") if d.strip()))

    if part == "train-baselines":
        base = replace(cfg.baselines, device=a.device)
        if a.plates:
            base = plates_baselines(base)
        parts = (a.only,) if a.only else ("regression", "pixel-ddpm", "raters")
        for path in train_baselines(base, parts, domain="plates" if a.plates else "mnist"):
            print(path)
        return
    res = run_benchmark(cfg)
    md = res.files.get("markdown") or res.files.get("plates_markdown")
    print(md.read_text() if md else "nothing was run (no domain and scale selected)")
    print("wrote", ", ".join(str(f) for f in res.files.values()))


RUNNERS = {"train": train_main, "evaluate": evaluate_main, "tune-strict": tune_strict_main, "sample": sample_main,
           "benchmark": benchmark_main}


def main(argv: list[str] | None = None) -> None:
    """``python -m sr_engine COMMAND [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m sr_engine {{{','.join(COMMANDS)}}} [options]  (--help after a command)")
        sys.exit(2)
    RUNNERS[argv[0]](argv[1:])
