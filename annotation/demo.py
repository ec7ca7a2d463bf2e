"""The demo projects made on the app's first start: ambiguous MNIST evaluation digits with their banks, and
ambiguous plates when the plates model and its reader are installed (:func:`bootstrap_demo`).

The digit demo runs ``mnist-x8``, where a 4x4 LR image really hides the digit. Its images are chosen where the
model's bank disagrees (:func:`ambiguous_digits`): for a fixed list of candidates (the first ``candidates``
evaluation rows, round-robin over the digits) a small probe bank is generated and read by the digit judge
(``sr_engine.eval.judge``); a candidate is ambiguous when at least two readings each hold a fair share (>= 25%)
of its probe bank. The clearest candidates (every probe sample read as the true digit) are the gold items.
Choosing demo images by the model's output is allowed; nothing is tuned on them: the rule, its sizes and its
threshold are fixed here. Without the judge (``data/classifiers/mnist-cnn.pt``) the demo falls back to a fixed
class rule (:func:`ambiguous_mnist`). The plates demo is chosen the same way, by the plate reader
(:func:`ambiguous_plates`), and is made in the background so the app starts serving at once.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db.engine import session_scope
from sr_engine import SREngine
from sr_engine.data import data_dir
from sr_engine.degradation import make_lr
from sr_engine.eval.judge import load_classifier, predict_digits
from sr_engine.eval.reader import load_reader, read_plates
from sr_engine.plates import eval_plates

from .accounts import create_rater
from .banks import BankJobReport, progress, run_bank_jobs
from .images import import_arrays, mnist_lr
from .projects import ProjectSettings, create_project, list_projects

logger = logging.getLogger(__name__)

CONFUSABLE_DIGITS = (3, 5, 8, 4, 7, 9)
GOLD_DIGITS = (0, 1)
DEMO_PROJECT = "demo: ambiguous MNIST digits"
DEMO_RATER, DEMO_ANALYST = "demo-rater", "demo-analyst"
DEMO_MODEL = "mnist-x8"
PLATES_DEMO_MODEL = "plates-x4"
DIGIT_GUIDELINES = ("Each small image hides one handwritten digit (0-9). Pick the samples that look most like a "
                    "real handwritten digit, best first, and type the digit you read. If two digits look equally "
                    "plausible, pick your best candidates of either and read the one you find more likely.")
PLATE_GUIDELINES = ("Each image is a licence plate. Pick the samples whose characters look most plausible, best "
                    "first, and type the plate as you read it, with ? for a character you cannot read.")
FAIR_SHARE = 0.25  # a reading "holds a fair share" of a probe bank at >= 25% of its samples (fixed, not tuned)


@dataclass(frozen=True)
class DemoAccounts:
    project_id: int
    rater: str
    rater_password: str
    analyst: str
    analyst_password: str

    def announcement(self) -> str:
        """The two lines the terminal shows on first start: the demo rater's and analyst's name and password."""
        return (f"demo rater:   {self.rater} / {self.rater_password}\n"
                f"demo analyst: {self.analyst} / {self.analyst_password}")


def ambiguous_mnist(scale: int, per_class: int = 2, digits: tuple[int, ...] = CONFUSABLE_DIGITS):
    """The first ``per_class`` evaluation rows of each digit in ``digits`` (in that order): (lr, hr, labels,
    rows) as :func:`annotation.images.mnist_lr` returns them."""
    lr, hr, labels, rows = mnist_lr(10 * per_class, scale)  # round-robin: per_class rows of every digit
    pick = [i for d in digits for i in np.flatnonzero(labels == d)[:per_class]]
    return lr[pick], hr[pick], labels[pick], rows[pick]


@dataclass(frozen=True)
class ProbedDigit:
    index: int  # position among the candidates (annotation.images.mnist_lr order)
    row: int  # the MNIST 5k row (an evaluation row)
    label: int  # the true digit
    readings: tuple[tuple[int, int], ...]  # (digit, samples read as it), most common first, over the probe bank
    n: int  # probe bank size

    @property
    def second_share(self) -> float:
        """Share of the probe bank read as the second most common digit (0: one reading only)."""
        return self.readings[1][1] / self.n if len(self.readings) > 1 else 0.0

    @property
    def ambiguous(self) -> bool:
        return self.second_share >= FAIR_SHARE

    @property
    def clear(self) -> bool:
        return len(self.readings) == 1 and self.readings[0][0] == self.label


def probe_digits(engine: SREngine, classifier, scale: int, *, candidates: int = 50, probe_n: int = 8,
                 probe_steps: int = 4, seed: int = 0) -> tuple[list[ProbedDigit], tuple]:
    """Read a small probe bank of each of the first ``candidates`` evaluation rows (round-robin over digits)
    with the digit judge. Returns (the probes, ``mnist_lr``'s (lr, hr, labels, rows) of the candidates)."""
    lr, hr, labels, rows = mnist_lr(candidates, scale)
    probes = []
    for i in range(len(lr)):
        bank = engine.sample_bank(lr[i], n=probe_n, steps=probe_steps, seed=seed + i)
        read = predict_digits(classifier, bank.images).argmax(1)
        counts = tuple(sorted(Counter(int(d) for d in read).items(), key=lambda kv: (-kv[1], kv[0])))
        probes.append(ProbedDigit(i, int(rows[i]), int(labels[i]), counts, probe_n))
    return probes, (lr, hr, labels, rows)


def ambiguous_digits(probes: list[ProbedDigit], *, count: int = 8, gold: int = 2) -> tuple[list, list]:
    """(ambiguous, gold) among ``probes``: up to ``count`` ambiguous ones (two readings with a fair share each;
    the largest second share first, then the lower index; if fewer qualify, the rest by the same order among
    those read two ways at all) and ``gold`` clear ones of distinct digits (lowest index first)."""
    order = sorted((p for p in probes if len(p.readings) > 1), key=lambda p: (-p.second_share, p.index))
    chosen = order[:count]
    golds, seen = [], set()
    for p in probes:
        if p.clear and p.label not in seen and len(golds) < gold:
            golds.append(p)
            seen.add(p.label)
    return chosen, golds


@dataclass(frozen=True)
class DemoDigits:
    """The demo's digits, gold items first: LR uint8 (n, h, w), HR uint8 (n, H, W), labels, MNIST rows, flags."""
    lr: np.ndarray
    hr: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    gold: tuple[bool, ...]


def probed_demo_digits(engine: SREngine, classifier, *, count: int = 8, gold: int = 2) -> DemoDigits:
    """The digits where ``engine``'s probe banks disagree (:func:`probe_digits`, :func:`ambiguous_digits`), plus
    ``gold`` clear ones. Runs the engine: call it outside a transaction."""
    probes, (lr, hr, labels, rows) = probe_digits(engine, classifier, int(engine.scale))
    amb, golds = ambiguous_digits(probes, count=count, gold=gold)
    logger.info("demo digits: %d of %d candidates read two ways with >= %.0f%% each; gold: rows %s",
                sum(p.ambiguous for p in probes), len(probes), 100 * FAIR_SHARE, [p.row for p in golds])
    pick = [p.index for p in golds] + [p.index for p in amb]
    return DemoDigits(lr[pick], hr[pick], labels[pick], rows[pick], (True,) * len(golds) + (False,) * len(amb))


def fixed_demo_digits(scale: int, per_class: int = 2) -> DemoDigits:
    """The fallback without the digit judge: ``per_class`` of each confusable digit, a 0 and a 1 as gold."""
    alr, ahr, alabels, arows = ambiguous_mnist(scale, per_class)
    glr, ghr, glabels, grows = ambiguous_mnist(scale, 1, GOLD_DIGITS)
    return DemoDigits(np.concatenate([glr, alr]), np.concatenate([ghr, ahr]), np.concatenate([glabels, alabels]),
                      np.concatenate([grows, arows]), (True,) * len(glr) + (False,) * len(alr))


def seed_demo(session: Session, model_name: str, scale: int, *, digits: DemoDigits | None = None,
              per_class: int = 2, bank_size: int = 16, steps: int = 8, k_picks: int = 3, raters_per_image: int = 3,
              ensemble_size: int = 3, rater_password: str | None = None,
              analyst_password: str | None = None) -> DemoAccounts:
    """Create the demo project with ``digits`` (default: :func:`fixed_demo_digits`), a demo rater and a demo
    analyst (generated passwords unless given). Banks are not generated here: queue them with
    ``run_bank_jobs``."""
    settings = ProjectSettings(name=DEMO_PROJECT, model_name=model_name, scale=scale, bank_size=bank_size,
                               k_picks=k_picks, raters_per_image=raters_per_image, ensemble_size=ensemble_size,
                               steps=steps, gold_rate=0.1, guidelines=DIGIT_GUIDELINES)
    pid = create_project(session, settings).id
    d = digits if digits is not None else fixed_demo_digits(scale, per_class)
    import_arrays(session, pid, list(d.lr), [f"mnist:eval:{int(r)}" for r in d.rows], hr=list(d.hr),
                  labels=[str(int(v)) for v in d.labels], gold=list(d.gold))
    rpw = rater_password or secrets.token_urlsafe(9)
    apw = analyst_password or secrets.token_urlsafe(9)
    create_rater(session, DEMO_RATER, "rater", rpw)
    create_rater(session, DEMO_ANALYST, "analyst", apw)
    return DemoAccounts(pid, DEMO_RATER, rpw, DEMO_ANALYST, apw)


# ---- plates --------------------------------------------------------------------------------------------------
PLATES_DEMO_PROJECT = "demo: ambiguous plates"


@dataclass(frozen=True)
class AmbiguousPlate:
    index: int  # position in sr_engine.plates.eval_plates()
    text: str  # the true string
    distinct_readings: int  # distinct strings the reader reads across the probe bank
    modal_share: float  # share of the probe bank read as the most common string
    second_share: float = 0.0  # share read as the second most common string (0: one reading only)
    position_second_share: float = 0.0  # the largest share of a second character at one position (see below)

    @property
    def ambiguous(self) -> bool:
        """Two readings each hold a fair share (``FAIR_SHARE``) of the probe bank, as whole strings or at one
        position ("8" or "B" in the third place, whatever the other places read)."""
        return max(self.second_share, self.position_second_share) >= FAIR_SHARE


def position_second_share(texts: list[str]) -> float:
    """The largest share of the probe bank that reads a second character at one position: per position of the
    readings of the most common length, the count of its second most common character over all readings."""
    if not texts:
        return 0.0
    length = Counter(len(t) for t in texts).most_common(1)[0][0]
    same = [t for t in texts if len(t) == length]
    best = 0
    for j in range(length):
        common = Counter(t[j] for t in same).most_common(2)
        if len(common) > 1:
            best = max(best, common[1][1])
    return best / len(texts)


def ambiguous_plates(engine: SREngine, reader, *, candidates: int = 128, count: int = 8, probe_n: int = 8,
                     probe_steps: int = 4, seed: int = 0) -> list[AmbiguousPlate]:
    """The ``count`` evaluation plates (of the first ``candidates``) on which the plate reader disagrees most
    across a small probe bank: first those where two readings each hold a fair share (``FAIR_SHARE``; as strings
    or at one position), then the largest second character's share at one position, then most distinct readings,
    then the lowest share of the most common one, then the lower index; the last item returned
    is the least ambiguous candidate (a gold item). Evaluation items only; nothing is tuned on them (the rule and
    its sizes are fixed here)."""
    if candidates <= count:
        raise ValueError(f"choose {count} of more than {count} candidates, got {candidates}")
    ev = eval_plates()
    scored = []
    for i in range(min(candidates, len(ev.texts))):
        bank = engine.sample_bank(make_lr(ev.images[i], engine.scale), n=probe_n, steps=probe_steps, seed=seed + i)
        texts, _ = read_plates(reader, bank.images)
        common = Counter(texts).most_common(2)
        scored.append(AmbiguousPlate(i, ev.texts[i], len(Counter(texts)), common[0][1] / len(texts),
                                     common[1][1] / len(texts) if len(common) > 1 else 0.0,
                                     position_second_share(list(texts))))
    scored.sort(key=lambda p: (not p.ambiguous, -p.position_second_share, -p.distinct_readings, p.modal_share,
                               p.index))
    return scored[:count] + scored[-1:]  # the last one: the least ambiguous, used as a gold item


def seed_plates_demo(session: Session, engine: SREngine, reader, *, count: int = 8, bank_size: int = 16, steps: int = 8,
                     k_picks: int = 3, raters_per_image: int = 3, ensemble_size: int = 3,
                     chosen: list[AmbiguousPlate] | None = None) -> tuple[int, list]:
    """A second demo project: ``count`` ambiguous evaluation plates (:func:`ambiguous_plates`) and the least
    ambiguous candidate as a gold item. Uses the demo accounts made by :func:`seed_demo` (or none). Returns
    (project id, the chosen plates). Banks are queued by the caller (``run_bank_jobs``). ``chosen``: plates
    already chosen by :func:`ambiguous_plates` (which runs the engine: better outside the transaction)."""
    chosen = chosen if chosen is not None else ambiguous_plates(engine, reader, count=count)
    ambiguous, gold = chosen[:-1], chosen[-1:]
    settings = ProjectSettings(name=PLATES_DEMO_PROJECT, model_name=engine.name, scale=int(engine.scale),
                               bank_size=bank_size, k_picks=k_picks, raters_per_image=raters_per_image,
                               ensemble_size=ensemble_size, steps=steps, gold_rate=0.1,
                               guidelines=PLATE_GUIDELINES)
    pid = create_project(session, settings).id
    ev = eval_plates()
    items = gold + ambiguous
    hr = [ev.images[p.index] for p in items]
    import_arrays(session, pid, [make_lr(h, engine.scale) for h in hr],
                  [f"plates:eval:{p.index}" for p in items], hr=hr, labels=[p.text for p in items],
                  gold=[True] * len(gold) + [False] * len(ambiguous))
    return pid, chosen


# ---- first start ---------------------------------------------------------------------------------------------
def bootstrap_demo(factory: sessionmaker[Session], models: Collection[str], engine_for: Callable[[str], SREngine],
                   *, model: str = DEMO_MODEL, plates: bool = True,
                   plates_in_background: bool = True) -> DemoAccounts | None:
    """The app's first start: if the store has no project yet and ``model`` is installed (one of ``models``),
    seed the digit demo (:func:`seed_demo`, its images chosen by the digit judge when it is installed) and
    generate its banks now, so the first rater is served at once; then (``plates``) the plates demo if its model
    and reader are installed, in a background thread unless ``plates_in_background=False`` (it appears in the
    project menu when its banks are ready). Progress goes to the log. Returns the demo accounts (None: no demo was
    made)."""
    with session_scope(factory) as s:
        if list_projects(s):
            return None
    if model not in models:
        logger.warning("no demo project: the model %r is not installed (data/checkpoints/)", model)
        return None
    engine = engine_for(model)
    judge = data_dir() / "classifiers" / "mnist-cnn.pt"
    classifier = load_classifier(judge) if judge.is_file() else None
    if classifier is None:
        logger.warning("the digit judge %s is missing: the demo digits follow a fixed class rule", judge)
    logger.info("demo project: choosing the digits where %s's probe banks disagree ...", engine.name)
    digits = probed_demo_digits(engine, classifier) if classifier is not None else None
    with session_scope(factory) as s:
        accounts = seed_demo(s, engine.name, int(engine.scale), digits=digits)
        n_images = progress(s, accounts.project_id).images
    logger.info("demo project: generating %d banks with %s ...", n_images, engine.name)

    def show(rep: BankJobReport) -> None:
        done = len(rep.completed) + len(rep.failed)
        bar = "#" * (20 * done // max(n_images, 1))
        logger.info("  banks [%-20s] %d/%d%s", bar, done, n_images,
                    f" ({len(rep.failed)} failed)" if rep.failed else "")

    rep = run_bank_jobs(factory, engine, accounts.project_id, on_progress=show)
    logger.info("demo banks ready in %.1f s", rep.seconds)
    if plates and plates_in_background:
        threading.Thread(target=_bootstrap_plates_demo, args=(factory, models, engine_for), name="plates-demo",
                         daemon=True).start()
    elif plates:
        _bootstrap_plates_demo(factory, models, engine_for)
    return accounts


def _bootstrap_plates_demo(factory: sessionmaker[Session], models: Collection[str],
                           engine_for: Callable[[str], SREngine]) -> None:
    """The second demo project, ambiguous plates, when the plates model and its reader are installed."""
    reader_path = data_dir() / "readers" / "plates-reader.pt"
    if PLATES_DEMO_MODEL not in models or not reader_path.is_file():
        logger.info("no plates demo: %r or its reader is not installed", PLATES_DEMO_MODEL)
        return
    try:
        engine = engine_for(PLATES_DEMO_MODEL)
        logger.info("plates demo: choosing the plates the reader disagrees on most ...")
        reader = load_reader(reader_path)
        chosen = ambiguous_plates(engine, reader)  # the engine runs outside the transaction: raters keep writing
        with session_scope(factory) as s:
            pid, chosen = seed_plates_demo(s, engine, reader, chosen=chosen)
        logger.info("plates demo: %d of %d chosen plates read two ways with >= %.0f%% each; generating %d banks",
                    sum(p.ambiguous for p in chosen[:-1]), len(chosen) - 1, 100 * FAIR_SHARE, len(chosen))
        rep = run_bank_jobs(factory, engine, pid)
        logger.info("plates demo banks ready in %.1f s", rep.seconds)
    except Exception:  # a background thread: its failure goes to the log; the digit demo is unaffected
        logger.exception("the plates demo could not be made")
