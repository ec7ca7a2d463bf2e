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
