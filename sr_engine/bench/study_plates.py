"""The simulated-rater study on plates: the digits study (:mod:`sr_engine.bench.study`) for plate strings, read per
aligned position.

    python -m sr_engine benchmark study plates-banks       # make and cache the banks' readings (minutes)
    python -m sr_engine benchmark study plates-calibrate   # training plates -> data/consensus/plates-x4.json
    python -m sr_engine benchmark study plates-evaluate    # evaluation plates -> results/study-plates/

Plates at x4 (8 x 32 LR of a 32 x 128 plate): each plate's bank of 32 samples comes from the shipped ``plates-x4``
engine (strict mode, 8 steps, seed = the plate's index plus the split's offset) and the plate reader reads every
sample (:mod:`sr_engine.evidence`): the reading shares are the bank's evidence and what a rater who "follows" the
bank is shown. A project holds the study's plates plus ``gold_plates`` gold items rendered from training fonts and
strings (known strings, never scored). A panel of seven (:func:`plate_panel`: 3 careful, 2 careless, 1 biased
toward a letter/digit confusion drawn per panel, e.g. reading 8 as B, 1 spammer) types every plate; each rater but
the spammer types one of the bank's readings (drawn by its share) instead of reading with probability ``follow``
(0.5, as for the digits). The consensus is :func:`sr_engine.consensus.fit_plate_consensus` (one-coin raters, one
EM over every (plate, position)); a plate's probability is the product of its positions' probabilities.

- ``calibrate`` uses **training plates only** (training fonts and strings, render seeds ``train_seed`` and
  ``gold_seed``; it asserts that no string is an evaluation string and no font an evaluation font): it chooses the
  evidence prior's ``beta`` and the follow model on a grid, fits the temperature for each (:func:`fit_plate_
  temperature`), keeps the setting with the lowest log loss of the plate probabilities, chooses adaptive overlap's
  minimum raters, and writes ``data/consensus/plates-x4.json`` with the plates used and the figures.
- ``evaluate`` uses **evaluation plates only** (the first ``eval_plates`` of :func:`sr_engine.plates.eval_plates`:
  held-out fonts and strings) with the stored settings, over several panels: whole-plate accuracy of the majority
  vote and of the posterior, ECE (10 bins) of both, the resolved plates' accuracy against the share resolved, and
  the votes adaptive overlap spends against a fixed 7; a reliability diagram and a risk-coverage plot.

Why the temperature is fitted on the plate probability (log loss of "the reading is right") and not on the
characters' NLL as for the digits: the product over positions is what the app states and thresholds, and raters
who copy a whole string from the bank make a plate's positions err together, which a per-character fit ignores.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..calibration import calibration_path, load_calibration, save_calibration
from ..consensus import PLATE_CONFIG, ConsensusConfig, PlateConsensus, Rating, fit_plate_consensus
from ..degradation import make_lr
from ..engines.registry import load_engine
from ..evidence import read_bank, reader_for
from ..plates import ALPHABET, EVAL_FONTS, TRAIN_FONTS, Plates, eval_plates, is_eval_string, render_plates
from ..raters_sim import SimRater, careful, careless, confuser, simulate_strings, spammer
from ..reliability import apply_temperature, expected_calibration_error, reliability_diagram, risk_coverage
from .study import best_min_raters, cache_matches, engine_settings, study_targets

logger = logging.getLogger(__name__)

MODEL = "plates-x4"
SPLITS = ("train", "gold", "eval")
SEED_OFFSET = {"train": 0, "gold": 10_000, "eval": 20_000}  # bank seeds: plate index + the split's offset
# the biased rater's confusion, drawn per panel: a digit and a letter the LR plates confuse (sr_engine.plates)
BIASES: tuple[tuple[str, str], ...] = (("8", "B"), ("B", "8"), ("0", "O"), ("O", "0"), ("1", "I"), ("5", "S"),
                                       ("2", "Z"), ("6", "G"))


@dataclass(frozen=True)
class PlateStudyConfig:
    bank_n: int = 32  # samples per bank
    steps: int = 8  # sampler steps (the shipped engine's default)
    mode: str = "strict"
    train_plates: int = 60  # calibration plates (training fonts and strings)
    gold_plates: int = 10  # gold items per project (training plates, never scored)
    eval_plates: int = 60  # the first of the fixed evaluation plates (held-out fonts and strings)
    train_seed: int = 4100  # render seed of the calibration plates
    gold_seed: int = 4101  # render seed of the gold plates
    panels: int = 5  # simulated panels (seeds) per stage
    follow: float = 0.5  # probability that a simulated rater types one of the bank's readings
    careful: float = 0.97  # per-character accuracy of a careful rater (fixed in advance, not fitted)
    careless: float = 0.85  # ... of a careless one
    bias_rate: float = 0.5  # the biased rater types its confusion's target for its source at this rate
    min_raters: int = 3  # adaptive overlap: raters every plate gets
    max_raters: int = 7  # ... and at most (the fixed overlap compared against)
    threshold: float = 0.95  # the resolve threshold (the product's default)
    seed: int = 0
    betas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)  # the calibration grid
    follows: tuple[str, ...] = ("off", "fit")


# ---- banks and their evidence --------------------------------------------------------------------------------
def study_plates(split: str, cfg: PlateStudyConfig) -> Plates:
    """The plates of a split: ``train`` and ``gold`` rendered from training fonts and strings, ``eval`` the first
    ``eval_plates`` of the fixed evaluation set."""
    if split == "train":
        return render_plates(cfg.train_plates, cfg.train_seed, "train")
    if split == "gold":
        return render_plates(cfg.gold_plates, cfg.gold_seed, "train")
    if split == "eval":
        ev = eval_plates()
        n = cfg.eval_plates
        return Plates(ev.images[:n], ev.texts[:n], ev.fonts[:n], ev.seed, ev.split)
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def assert_training(b: dict) -> None:
    """Refuse anything of the evaluation plates: a training split, no evaluation string, no evaluation font."""
    assert str(b["split"]) == "train", f"not training plates: split {b['split']}"
    assert not any(is_eval_string(str(t)) for t in b["texts"]), "an evaluation string among the plates"
    assert set(map(str, b["fonts"])) <= set(TRAIN_FONTS), "an evaluation font among the plates"


def bank_readings(split: str, cfg: PlateStudyConfig, cache: Path) -> dict[str, np.ndarray]:
    """{"texts" str (N,), "fonts" str (N,), "split" str (), "readings" str (N, bank_n), "confidence" (N, bank_n)}
    of the plates of ``split`` (:func:`study_plates`), cached in ``cache`` with the engine checkpoint's SHA-256 and
    strict-mode settings (a cache of other weights or settings, or of none recorded, is made again)."""
    engine = load_engine(MODEL)
    sha = engine.config["checkpoint_sha256"]
    if cache.is_file():
        got = dict(np.load(cache))
        want = {"train": cfg.train_plates, "gold": cfg.gold_plates, "eval": cfg.eval_plates}[split]
        if got["readings"].shape == (want, cfg.bank_n) and cache_matches(got, engine):
            return got
        logger.info("%s: made with other engine weights or settings; sampling the banks again", cache)
    plates = study_plates(split, cfg)
    reader = reader_for(engine.domain)
    if reader is None:
        raise FileNotFoundError(f"no plate reader for {MODEL}: the study needs data/readers/plates-reader.pt")
    lr = make_lr(plates.images, engine.scale)
    readings, conf = [], np.zeros((len(lr), cfg.bank_n))
    t0 = time.perf_counter()
    for i, x in enumerate(lr):
        bank = engine.sample_bank(x, n=cfg.bank_n, steps=cfg.steps, seed=SEED_OFFSET[split] + i, mode=cfg.mode)
        ev = read_bank(reader, bank.images)
        readings.append(list(ev.readings))
        conf[i] = ev.confidence
        if i % 10 == 0:
            logger.info("%s plate banks: %d of %d (%.0f s)", split, i, len(lr), time.perf_counter() - t0)
    logger.info("%s plate banks: %d in %.0f s", split, len(lr), time.perf_counter() - t0)
    out = {"texts": np.array(plates.texts), "fonts": np.array(plates.fonts), "split": np.array(plates.split),
           "readings": np.array(readings), "confidence": conf,
           "seconds": np.array(time.perf_counter() - t0), "engine_sha256": np.array(sha),
           "engine_strict": np.array(engine_settings(engine))}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **out)
    return out


def reading_shares(readings: np.ndarray) -> list[dict[str, float]]:
    """str (N, n) readings -> per plate {reading: share} (blank readings are kept: a share of nothing legible)."""
    out = []
    for row in readings:
        c = Counter(str(t) for t in row)
        out.append({t: v / len(row) for t, v in c.items()})
    return out


# ---- one simulated project -----------------------------------------------------------------------------------
def plate_panel(cfg: PlateStudyConfig, bias: tuple[str, str] = ("8", "B")) -> list[SimRater]:
    """The panel of seven over :data:`ALPHABET`: 3 careful, 2 careless, 1 biased (types ``bias[1]`` for a true
    ``bias[0]`` at ``cfg.bias_rate``), 1 spammer (random characters; never follows)."""
    K, f = len(ALPHABET), cfg.follow
    return ([careful(K, cfg.careful, name=f"careful-{i}", follow=f) for i in range(3)]
            + [careless(K, cfg.careless, name=f"careless-{i}", follow=f) for i in range(2)]
            + [confuser(K, ALPHABET.index(bias[0]), ALPHABET.index(bias[1]), cfg.bias_rate, cfg.careful,
                        name="biased", follow=f), spammer(K)])


PANEL_NAMES = [r.name for r in plate_panel(PlateStudyConfig())]


@dataclass
class PlateProject:
    truth: list[str]  # the scored plates' strings, then the gold items'
    shown: list[dict[str, float]]  # the bank's reading shares per plate (the evidence, and what followers type)
    n_scored: int
    ratings: list[Rating]  # every panel member on every plate (adaptive overlap reveals them in order)
    order: np.ndarray  # int (n, 7): the order in which the panel reaches each plate
    bias: tuple[str, str]


def simulate_project(scored: dict, gold: dict, cfg: PlateStudyConfig, panel_seed: int) -> PlateProject:
    truth = [str(t) for t in scored["texts"]] + [str(t) for t in gold["texts"]]
    shown = reading_shares(scored["readings"]) + reading_shares(gold["readings"])
    rng = np.random.default_rng([cfg.seed, panel_seed])
    bias = BIASES[int(rng.integers(len(BIASES)))]
    panel = plate_panel(cfg, bias)
    ratings = simulate_strings(truth, panel, rng, alphabet=ALPHABET, shown=shown)
    order = np.stack([rng.permutation(len(panel)) for _ in range(len(truth))])
    return PlateProject(truth, shown, len(scored["texts"]), ratings, order, bias)


def fit_project(p: PlateProject, cfg: ConsensusConfig, keep: set[tuple[int, str]] | None = None
                ) -> list[PlateConsensus]:
    """The consensus of the scored plates (gold items anchor the fit, the bank's shares are the evidence)."""
    ratings = p.ratings if keep is None else [r for r in p.ratings if (r.image, r.rater) in keep]
    gold = {i: p.truth[i] for i in range(p.n_scored, len(p.truth))}
    evidence = {i: p.shown[i] for i in range(len(p.truth))}
    res = fit_plate_consensus(ratings, ALPHABET, gold=gold, evidence=evidence, images=list(range(len(p.truth))),
                              config=cfg)
    return list(res.images[: p.n_scored])


def plate_probabilities(plates: list[PlateConsensus], temperature: float = 1.0) -> np.ndarray:
    """float (n,): each plate's probability (product over positions) after ``temperature`` on every position's
    posterior (0 for a plate without a reading)."""
    out = np.zeros(len(plates))
    for i, c in enumerate(plates):
        if c.reading is None:
            continue
        post = np.array([q.posterior for q in c.positions])
        if temperature != 1.0:
            post = apply_temperature(post, temperature)
        out[i] = float(np.prod(post.max(1)))
    return out


def correct(plates: list[PlateConsensus], truth: list[str]) -> np.ndarray:
    return np.array([c.reading == t for c, t in zip(plates, truth)], dtype=bool)


def _log_loss(prob: np.ndarray, right: np.ndarray) -> float:
    p = np.clip(prob, 1e-9, 1 - 1e-9)
    return float(-np.where(right, np.log(p), np.log1p(-p)).mean())


def fit_plate_temperature(plates: list[PlateConsensus], right: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0),
                          iters: int = 60) -> tuple[float, float]:
    """(T, log loss): the temperature on every position's posterior that minimises the log loss of the plates'
    probabilities against whether their readings are right (golden-section search over log T in ``bounds``; fit it
    on calibration plates only)."""
    if not len(plates) or len(plates) != len(right):
        raise ValueError("need one right/wrong flag per plate, and plates")

    def loss(log_t: float) -> float:
        return _log_loss(plate_probabilities(plates, math.exp(log_t)), right)

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
        if hi - lo < 1e-4:
            break
    t = math.exp((lo + hi) / 2)
    return t, loss(math.log(t))


def majority(p: PlateProject) -> tuple[list[str], np.ndarray]:
    """(reading, share of the panel) of the plain majority string per scored plate (ties: the first in order)."""
    per: dict[int, list[str]] = {}
    for r in p.ratings:
        if r.image < p.n_scored:
            per.setdefault(r.image, []).append(r.reading or "")
    out, share = [], np.zeros(p.n_scored)
    for i in range(p.n_scored):
        votes = per.get(i, [])
        if not votes:
            out.append("")
            continue
        c = Counter(votes)
        best = max(c.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0]]))
        out.append(best[0])
        share[i] = best[1] / len(votes)
    return out, share


def adaptive(p: PlateProject, cfg: ConsensusConfig, study: PlateStudyConfig) -> tuple[list[PlateConsensus], int]:
    """Reveal ``min_raters`` raters per plate, then one more per unresolved plate per round, up to ``max_raters``;
    the consensus is refitted on what is revealed each round. (final consensus, votes spent)."""
    n = len(p.truth)
    count = np.full(n, study.min_raters)
    count[p.n_scored:] = study.max_raters  # gold items: every rater (they anchor, as in the app)
    while True:
        keep = {(i, PANEL_NAMES[j]) for i in range(n) for j in p.order[i, : count[i]]}
        plates = fit_project(p, cfg, keep)
        prob = np.array([c.probability for c in plates])
        open_ = (prob < study.threshold) & (count[: p.n_scored] < study.max_raters)
        if not open_.any():
            return plates, int(count[: p.n_scored].sum())
        count[: p.n_scored][open_] += 1


# ---- calibrate (training plates) -----------------------------------------------------------------------------
def _config(beta: float, follow: str, temperature: float = 1.0) -> ConsensusConfig:
    return ConsensusConfig.from_dict({**PLATE_CONFIG.to_dict(), "beta": beta, "follow": follow,
                                      "temperature": temperature})


def calibrate(out_dir: Path, cfg: PlateStudyConfig = PlateStudyConfig(), data_path: Path | None = None) -> dict:
    train = bank_readings("train", cfg, out_dir / "banks-train.npz")
    gold = bank_readings("gold", cfg, out_dir / "banks-gold.npz")
    assert_training(train)
    assert_training(gold)
    projects = [simulate_project(train, gold, cfg, 1000 + s) for s in range(cfg.panels)]
    truth = [t for p in projects for t in p.truth[: p.n_scored]]
    grid = []
    for follow in cfg.follows:
        for beta in cfg.betas:
            if follow == "fit" and beta == 0:
                continue  # not identified (sr_engine.consensus)
            plates = [c for p in projects for c in fit_project(p, _config(beta, follow))]
            right = correct(plates, truth)
            t, loss = fit_plate_temperature(plates, right)
            prob = plate_probabilities(plates, t)
            grid.append({"beta": beta, "follow": follow, "temperature": t, "log_loss": loss,
                         "log_loss_t1": _log_loss(plate_probabilities(plates), right),
                         "accuracy": float(right.mean()), "ece": expected_calibration_error(prob, right)})
            logger.info("plate calibration grid %s", grid[-1])
    best = min(grid, key=lambda g: g["log_loss"])
    config = _config(best["beta"], best["follow"], best["temperature"])
    overlap = choose_min_raters(projects, config, cfg)
    path = save_calibration(
        data_path or calibration_path(kind="plates"), config,
        command="python -m sr_engine benchmark study plates-calibrate",
        rows={"split": "training plates (training fonts and strings)", "model": MODEL,
              "calibration_plates": {"render_seed": cfg.train_seed, "n": cfg.train_plates,
                                     "texts": [str(t) for t in train["texts"]]},
              "gold_plates": {"render_seed": cfg.gold_seed, "n": cfg.gold_plates,
                              "texts": [str(t) for t in gold["texts"]]}},
        study=asdict(cfg), grid=grid, chosen=best, adaptive=overlap)
    return {"path": str(path), "chosen": best, "grid": grid, "adaptive": overlap}


def choose_min_raters(projects: list[PlateProject], config: ConsensusConfig, cfg: PlateStudyConfig) -> dict:
    """On the calibration projects: the minimum raters (1 .. cfg.min_raters) that saves the most votes against a
    fixed ``max_raters`` while losing at most MAX_LOSS whole-plate accuracy (as for the digits)."""
    fixed = [correct(fit_project(p, config), p.truth[: p.n_scored]) for p in projects]
    acc_fixed = float(np.concatenate(fixed).mean())
    per_m = []
    for m in range(1, cfg.min_raters + 1):
        study = PlateStudyConfig(**{**asdict(cfg), "min_raters": m})
        right, spent, total = [], 0, 0
        for p in projects:
            plates, n = adaptive(p, config, study)
            right.append(correct(plates, p.truth[: p.n_scored]))
            spent += n
            total += cfg.max_raters * p.n_scored
        per_m.append({"min_raters": m, "accuracy": float(np.concatenate(right).mean()), "accuracy_fixed": acc_fixed,
                      "vote_saving": 1 - spent / total})
        logger.info("adaptive overlap on the calibration plates: %s", per_m[-1])
    return best_min_raters(per_m, cfg)


# ---- evaluate (evaluation plates) ----------------------------------------------------------------------------
@dataclass
class PlateStudyRow:
    panel: int
    plates: int
    bias: str  # the biased rater's confusion, e.g. "8->B"
    acc_majority: float  # whole plates
    acc_posterior: float
    ece_majority: float  # the majority's share as a probability
    ece_posterior: float
    resolved_share: float  # plate probability >= threshold, all 7 raters
    resolved_accuracy: float
    acc_adaptive: float
    votes_fixed7: int
    votes_adaptive: int
    vote_saving: float  # 1 - adaptive / fixed
    adaptive_resolved_share: float
    adaptive_resolved_accuracy: float


def _acc(right: np.ndarray, mask: np.ndarray) -> float:
    return float(right[mask].mean()) if mask.any() else float("nan")


def evaluate(out_dir: Path, cfg: PlateStudyConfig = PlateStudyConfig(), data_path: Path | None = None) -> dict:
    from .plots import reliability_plot, risk_coverage_plot

    path = Path(data_path or calibration_path(kind="plates"))
    config = load_calibration(path, kind="plates")
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if "adaptive" in saved:  # the minimum chosen on the calibration plates
        cfg = PlateStudyConfig(**{**asdict(cfg), "min_raters": int(saved["adaptive"]["min_raters"])})
    ev = bank_readings("eval", cfg, out_dir / "banks-eval.npz")
    gold = bank_readings("gold", cfg, out_dir / "banks-gold.npz")
    assert str(ev["split"]) == "eval" and set(map(str, ev["fonts"])) <= set(EVAL_FONTS)
    assert_training(gold)
    rows, all_prob, all_right, all_share, all_maj_right = [], [], [], [], []
    for s in range(cfg.panels):
        p = simulate_project(ev, gold, cfg, s)
        truth = p.truth[: p.n_scored]
        plates = fit_project(p, config)
        prob = np.array([c.probability for c in plates])
        right = correct(plates, truth)
        maj, share = majority(p)
        maj_right = np.array([m == t for m, t in zip(maj, truth)])
        res = prob >= cfg.threshold
        plates_a, spent = adaptive(p, config, cfg)
        prob_a = np.array([c.probability for c in plates_a])
        right_a = correct(plates_a, truth)
        res_a = prob_a >= cfg.threshold
        fixed = cfg.max_raters * p.n_scored
        rows.append(PlateStudyRow(
            panel=s, plates=p.n_scored, bias="->".join(p.bias), acc_majority=float(maj_right.mean()),
            acc_posterior=float(right.mean()), ece_majority=expected_calibration_error(share, maj_right),
            ece_posterior=expected_calibration_error(prob, right), resolved_share=float(res.mean()),
            resolved_accuracy=_acc(right, res), acc_adaptive=float(right_a.mean()), votes_fixed7=fixed,
            votes_adaptive=spent, vote_saving=1 - spent / fixed, adaptive_resolved_share=float(res_a.mean()),
            adaptive_resolved_accuracy=_acc(right_a, res_a)))
        logger.info("panel %d: %s", s, rows[-1])
        all_prob.append(prob)
        all_right.append(right)
        all_share.append(share)
        all_maj_right.append(maj_right)
    prob, right = np.concatenate(all_prob), np.concatenate(all_right)
    share, maj_right = np.concatenate(all_share), np.concatenate(all_maj_right)
    out_dir.mkdir(parents=True, exist_ok=True)
    rel_post, rel_maj = reliability_diagram(prob, right), reliability_diagram(share, maj_right)
    rc_post, rc_maj = risk_coverage(prob, right), risk_coverage(share, maj_right)
    figs = {"reliability": reliability_plot({"posterior": rel_post, "majority share": rel_maj},
                                            out_dir / "reliability.png"),
            "risk_coverage": risk_coverage_plot({"posterior": rc_post, "majority share": rc_maj},
                                                out_dir / "risk_coverage.png", cfg.threshold)}
    summary = _summary(rows, config, cfg, ev, rel_post, rel_maj, rc_post, rc_maj)
    import pandas as pd

    pd.DataFrame([asdict(r) for r in rows]).to_csv(out_dir / "study.csv", index=False)
    (out_dir / "study.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    (out_dir / "study.md").write_text(_markdown(summary), encoding="utf-8")
    return {"summary": summary, "files": {k: str(v) for k, v in figs.items()}}


def _summary(rows, config, cfg, ev, rel_post, rel_maj, rc_post, rc_maj) -> dict:
    keys = [k for k in PlateStudyRow.__dataclass_fields__ if k not in ("panel", "plates", "bias")]
    col = {k: np.array([getattr(r, k) for r in rows], dtype=float) for k in keys}
    shares = reading_shares(ev["readings"])
    bank_right = [max(s, key=s.get) == str(t) for s, t in zip(shares, ev["texts"])]
    return {"command": "python -m sr_engine benchmark study plates-evaluate", "config": config.to_dict(),
            "study": asdict(cfg), "plates": int(len(ev["texts"])), "panels": len(rows),
            "biases": [r.bias for r in rows], "bank_majority_wrong": int(len(bank_right) - sum(bank_right)),
            "bank_seconds": float(ev["seconds"]) if "seconds" in ev else None,
            "mean": {k: float(np.nanmean(v)) for k, v in col.items()},
            "sd": {k: float(np.nanstd(v)) for k, v in col.items()},
            "pooled": {"ece_posterior": rel_post.ece, "ece_majority": rel_maj.ece, "aurc_posterior": rc_post.aurc,
                       "aurc_majority": rc_maj.aurc},
            "targets": study_targets(*(np.nanmean(col[k]) for k in ("ece_posterior", "resolved_accuracy",
                                                                      "resolved_share", "vote_saving")),
                                     np.mean(col["acc_posterior"]) - np.mean(col["acc_adaptive"]))}


def _markdown(s: dict) -> str:
    m, sd, st = s["mean"], s["sd"], s["study"]
    f = lambda k, pct=True: (f"{100 * m[k]:.1f}% ± {100 * sd[k]:.1f}" if pct  # noqa: E731
                             else f"{m[k]:.3f} ± {sd[k]:.3f}")
    lines = [
        "# Simulated-rater study: plates", "",
        f"Command: `{s['command']}` (settings: `data/consensus/plates-x4.json`, fitted on training plates by "
        "`python -m sr_engine benchmark study plates-calibrate`; the banks are cached by "
        "`python -m sr_engine benchmark study plates-banks`).", "",
        f"{s['plates']} evaluation plates (the first {st['eval_plates']} of the fixed evaluation set: held-out fonts "
        f"and strings), banks of {st['bank_n']} from `{MODEL}` ({st['mode']}, {st['steps']} steps) read by the plate "
        f"reader; {s['panels']} panels of 7 (3 careful at {st['careful']} per character, 2 careless at "
        f"{st['careless']}, 1 biased reading one character as another at {st['bias_rate']} "
        f"({', '.join(s['biases'])} in the panels), 1 spammer; each but the spammer types one of the bank's readings "
        f"with probability {st['follow']}); {st['gold_plates']} gold plates from training fonts and strings per "
        f"project (not scored). The bank's majority reading is wrong on {s['bank_majority_wrong']} of "
        f"{s['plates']} plates. Accuracies are of whole plates; a plate's probability is the product of its "
        "positions'. Mean ± sd over panels.", "",
        "| figure | value |", "|---|---|",
        f"| accuracy, majority vote of 7 | {f('acc_majority')} |",
        f"| accuracy, posterior (7 raters) | {f('acc_posterior')} |",
        f"| ECE (10 bins), majority share | {f('ece_majority', False)} |",
        f"| ECE (10 bins), posterior | {f('ece_posterior', False)} |",
        f"| resolved (posterior >= {st['threshold']}), share | {f('resolved_share')} |",
        f"| resolved, accuracy | {f('resolved_accuracy')} |",
        f"| adaptive overlap ({st['min_raters']}..{st['max_raters']}), accuracy | {f('acc_adaptive')} |",
        f"| adaptive overlap, votes saved against a fixed 7 | {f('vote_saving')} |",
        f"| adaptive overlap, resolved share / accuracy | {f('adaptive_resolved_share')} / "
        f"{f('adaptive_resolved_accuracy')} |", "",
        f"Pooled over panels: ECE posterior {s['pooled']['ece_posterior']:.3f}, majority share "
        f"{s['pooled']['ece_majority']:.3f}; area under the risk-coverage curve {s['pooled']['aurc_posterior']:.4f} "
        f"(majority share {s['pooled']['aurc_majority']:.4f}).", "",
        "Targets (the digits study's): " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in s["targets"].items()),
        "", "![reliability](reliability.png) ![risk-coverage](risk_coverage.png)", ""]
    return "\n".join(lines)


def run(stage: str, out: str | Path = "results/study-plates", cfg: PlateStudyConfig = PlateStudyConfig()) -> dict:
    out = Path(out)
    if stage == "calibrate":
        return calibrate(out, cfg)
    if stage == "evaluate":
        return evaluate(out, cfg)
    if stage == "banks":  # only make (and cache) the banks' readings
        return {split: float(bank_readings(split, cfg, out / f"banks-{split}.npz").get("seconds", np.nan))
                for split in SPLITS}
    raise ValueError(f"stage must be calibrate, evaluate or banks, got {stage!r}")


__all__ = ["PlateStudyConfig", "run", "calibrate", "evaluate", "bank_readings", "simulate_project", "adaptive",
           "plate_panel", "fit_plate_temperature", "plate_probabilities", "assert_training"]
