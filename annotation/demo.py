"""The demo project made on the app's first start: ambiguous MNIST evaluation digits with their banks.

Which digits are "ambiguous" is fixed in advance, not measured on the evaluation rows: the first evaluation
rows of the classes that are confused most often at low resolution (3/5/8 and 4/7/9), ``per_class`` of each.
Two unambiguous digits (a 0 and a 1) are gold items, so the overview can show gold accuracy. Nothing here looks
at a model's output or tunes a threshold on these rows.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from .accounts import create_rater
from .images import import_arrays, mnist_lr
from .projects import ProjectSettings, create_project

CONFUSABLE_DIGITS = (3, 5, 8, 4, 7, 9)
GOLD_DIGITS = (0, 1)
DEMO_PROJECT = "demo: ambiguous MNIST digits"
DEMO_RATER, DEMO_ANALYST = "demo-rater", "demo-analyst"


@dataclass(frozen=True)
class DemoAccounts:
    project_id: int
    rater: str
    rater_password: str
    analyst: str
    analyst_password: str


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


def ambiguous_plates(engine, reader, *, candidates: int = 32, count: int = 8, probe_n: int = 8,
                     probe_steps: int = 4, seed: int = 0) -> list[AmbiguousPlate]:
    """The ``count`` evaluation plates (of the first ``candidates``) on which the plate reader disagrees most
    across a small probe bank: most distinct readings, then the lowest share of the most common one, then the
    lower index. Evaluation items only; nothing is tuned on them (the rule and its sizes are fixed here)."""
    from collections import Counter

    from sr_engine.degradation import make_lr
    from sr_engine.eval.reader import read_plates
    from sr_engine.plates import eval_plates

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


def seed_plates_demo(session: Session, engine, reader, *, count: int = 8, bank_size: int = 16, steps: int = 8,
                     k_picks: int = 3, raters_per_image: int = 3, ensemble_size: int = 3) -> tuple[int, list]:
    """A second demo project: ``count`` ambiguous evaluation plates (:func:`ambiguous_plates`) and the least
    ambiguous candidate as a gold item. Uses the demo accounts made by :func:`seed_demo` (or none). Returns
    (project id, the chosen plates). Banks are queued by the caller (``run_bank_jobs``)."""
    from sr_engine.degradation import make_lr
    from sr_engine.plates import eval_plates

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
