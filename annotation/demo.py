"""The demo projects made on the app's first start: ambiguous MNIST evaluation digits with their banks, and
ambiguous plates when the plates model and its reader are installed (:func:`bootstrap_demo`).

Which digits are "ambiguous" is fixed in advance, not measured on the evaluation rows: the first evaluation
rows of the classes that are confused most often at low resolution (3/5/8 and 4/7/9), ``per_class`` of each.
Two unambiguous digits (a 0 and a 1) are gold items, so the overview can show gold accuracy. Nothing here looks
at a model's output or tunes a threshold on these rows.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from db.engine import session_scope
from sr_engine import SREngine
from sr_engine.data import data_dir
from sr_engine.degradation import make_lr
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
DEMO_MODEL = "mnist-x4"
PLATES_DEMO_MODEL = "plates-x4"


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


def seed_demo(session: Session, model_name: str, scale: int, *, per_class: int = 2, bank_size: int = 16,
              steps: int = 8, k_picks: int = 3, raters_per_image: int = 3, ensemble_size: int = 3,
              rater_password: str | None = None, analyst_password: str | None = None) -> DemoAccounts:
    """Create the demo project (12 ambiguous digits + 2 gold items by default), a demo rater and a demo analyst
    (generated passwords unless given). Banks are not generated here: queue them with ``run_bank_jobs``."""
    settings = ProjectSettings(name=DEMO_PROJECT, model_name=model_name, scale=scale, bank_size=bank_size,
                               k_picks=k_picks, raters_per_image=raters_per_image, ensemble_size=ensemble_size,
                               steps=steps, gold_rate=0.1)
    pid = create_project(session, settings).id
    lr, hr, labels, rows = ambiguous_mnist(scale, per_class)
    glr, ghr, glabels, grows = ambiguous_mnist(scale, 1, GOLD_DIGITS)
    import_arrays(session, pid, list(glr) + list(lr), [f"mnist:eval:{int(r)}" for r in list(grows) + list(rows)],
                  hr=list(ghr) + list(hr), labels=[str(int(v)) for v in list(glabels) + list(labels)],
                  gold=[True] * len(glr) + [False] * len(lr))
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


def ambiguous_plates(engine: SREngine, reader, *, candidates: int = 32, count: int = 8, probe_n: int = 8,
                     probe_steps: int = 4, seed: int = 0) -> list[AmbiguousPlate]:
    """The ``count`` evaluation plates (of the first ``candidates``) on which the plate reader disagrees most
    across a small probe bank: most distinct readings, then the lowest share of the most common one, then the
    lower index. Evaluation items only; nothing is tuned on them (the rule and its sizes are fixed here)."""
    if candidates <= count:
        raise ValueError(f"choose {count} of more than {count} candidates, got {candidates}")
    ev = eval_plates()
    scored = []
    for i in range(min(candidates, len(ev.texts))):
        bank = engine.sample_bank(make_lr(ev.images[i], engine.scale), n=probe_n, steps=probe_steps, seed=seed + i)
        texts, _ = read_plates(reader, bank.images)
        counts = Counter(texts)
        scored.append(AmbiguousPlate(i, ev.texts[i], len(counts), counts.most_common(1)[0][1] / len(texts)))
    scored.sort(key=lambda p: (-p.distinct_readings, p.modal_share, p.index))
    return scored[:count] + scored[-1:]  # the last one: the least ambiguous, used as a gold item


def seed_plates_demo(session: Session, engine: SREngine, reader, *, count: int = 8, bank_size: int = 16, steps: int = 8,
                     k_picks: int = 3, raters_per_image: int = 3, ensemble_size: int = 3) -> tuple[int, list]:
    """A second demo project: ``count`` ambiguous evaluation plates (:func:`ambiguous_plates`) and the least
    ambiguous candidate as a gold item. Uses the demo accounts made by :func:`seed_demo` (or none). Returns
    (project id, the chosen plates). Banks are queued by the caller (``run_bank_jobs``)."""
    chosen = ambiguous_plates(engine, reader, count=count)
    ambiguous, gold = chosen[:-1], chosen[-1:]
    settings = ProjectSettings(name=PLATES_DEMO_PROJECT, model_name=engine.name, scale=int(engine.scale),
                               bank_size=bank_size, k_picks=k_picks, raters_per_image=raters_per_image,
                               ensemble_size=ensemble_size, steps=steps, gold_rate=0.1)
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
                   *, model: str = DEMO_MODEL) -> DemoAccounts | None:
    """The app's first start: if the store has no project yet and ``model`` is installed (one of ``models``),
    seed the digit demo (:func:`seed_demo`) and generate its banks now, so the first rater is served at once;
    then the plates demo if its model and reader are installed. Progress goes to the log. Returns the demo
    accounts (None: no demo was made)."""
    with session_scope(factory) as s:
        if list_projects(s):
            return None
    if model not in models:
        logger.warning("no demo project: the model %r is not installed (data/checkpoints/)", model)
        return None
    engine = engine_for(model)
    with session_scope(factory) as s:
        accounts = seed_demo(s, engine.name, int(engine.scale))
        n_images = progress(s, accounts.project_id).images
    logger.info("demo project: generating %d banks with %s ...", n_images, engine.name)

    def show(rep: BankJobReport) -> None:
        done = len(rep.completed) + len(rep.failed)
        bar = "#" * (20 * done // max(n_images, 1))
        logger.info("  banks [%-20s] %d/%d%s", bar, done, n_images,
                    f" ({len(rep.failed)} failed)" if rep.failed else "")

    rep = run_bank_jobs(factory, engine, accounts.project_id, on_progress=show)
    logger.info("demo banks ready in %.1f s", rep.seconds)
    _bootstrap_plates_demo(factory, models, engine_for)
    return accounts


def _bootstrap_plates_demo(factory: sessionmaker[Session], models: Collection[str],
                           engine_for: Callable[[str], SREngine]) -> None:
    """The second demo project, ambiguous plates, when the plates model and its reader are installed."""
    reader_path = data_dir() / "readers" / "plates-reader.pt"
    if PLATES_DEMO_MODEL not in models or not reader_path.is_file():
        logger.info("no plates demo: %r or its reader is not installed", PLATES_DEMO_MODEL)
        return
    engine = engine_for(PLATES_DEMO_MODEL)
    logger.info("plates demo: choosing the plates the reader disagrees on most ...")
    with session_scope(factory) as s:
        pid, chosen = seed_plates_demo(s, engine, load_reader(reader_path))
    logger.info("plates demo: generating %d banks with %s ...", len(chosen), engine.name)
    rep = run_bank_jobs(factory, engine, pid)
    logger.info("plates demo banks ready in %.1f s", rep.seconds)
