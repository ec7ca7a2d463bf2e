"""The ensemble of an image: the pixel mean (LDM-SS) of its m most-voted samples, through the engine's own
``ensemble``, which checks it against D (LR-PSNR) and against the flow (``f(x_ens) -> y_hat``) and re-projects it
onto {D x = y, 0 <= x <= 1} when it falls below 45 dB. Stored with its figures and PNG; recomputing adds a new
row (the newest is current), so an ensemble's history stays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Bank, Ensemble, LRImage, Sample
from sr_engine import SREngine

from .aggregate import approval_counts, borda_scores, ranking
from .analysis import load_votes
from .audit import record
from .banks import complete_bank
from .errors import InvalidInput
from .images import decode_png, encode_png, get_image, lr_array
from .projects import get_project

Weighting = Literal["mean", "votes"]


@dataclass
class EnsembleResult:
    ensemble_id: int
    image_id: int
    bank_id: int
    sample_indices: list[int]
    weights: list[float]
    method: str
    n_submissions: int
    lr_psnr: float
    lr_psnr_before: float
    consistency_mse: float
    flow_consistency: float | None
    reprojected: bool
    png: bytes


def _result(e: Ensemble, image_id: int) -> EnsembleResult:
    return EnsembleResult(e.id, image_id, e.bank_id, list(e.sample_indices), list(e.weights), e.method,
                          e.n_submissions, e.lr_psnr, e.lr_psnr_before, e.consistency_mse, e.flow_consistency,
                          bool(e.reprojected), e.png)


def make_ensemble(session: Session, engine: SREngine, image_id: int, *, m: int | None = None,
                  weighting: Weighting = "mean", include_excluded: bool = False,
                  actor_id: int | None = None) -> EnsembleResult:
    """Average the m (default: the project's ``ensemble_size``) most-voted samples of the image's bank (approval
    count, ties by Borda then index; only samples someone picked). ``weighting="votes"`` weights them by approval
    count. ``engine`` must be the bank's model (``engine.name``)."""
    if weighting not in ("mean", "votes"):
        raise InvalidInput(f"weighting must be 'mean' or 'votes', got {weighting!r}")
    image = get_image(session, image_id)
    project = get_project(session, image.project_id)
    bank = complete_bank(session, image_id)
    if bank is None:
        raise InvalidInput(f"image {image_id} has no complete bank")
    if engine.name != bank.model_name or int(engine.scale) != project.scale:
        raise InvalidInput(f"the bank was made by {bank.model_name!r}; this engine is {engine.name!r}")
    m = project.ensemble_size if m is None else m
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= bank.n:
        raise InvalidInput(f"m must be an integer in [1, {bank.n}], got {m!r}")
    votes = load_votes(session, project.id, image_id=image_id, include_excluded=include_excluded)
    if not votes:
        raise InvalidInput(f"image {image_id} has no votes yet")
    approval = approval_counts(votes, bank.n)
    order = ranking(approval, borda_scores(votes, bank.n, project.k_picks))
    top = [i for i in order if approval[i] > 0][:m]
    rows = {s.index: s for s in session.scalars(select(Sample).where(Sample.bank_id == bank.id,
                                                                     Sample.index.in_(top)))}
    images = np.stack([decode_png(rows[i].png) for i in top])
    weights = [float(approval[i]) for i in top] if weighting == "votes" else None
    rep = engine.ensemble(images, lr_array(image), weights=weights)
    row = Ensemble(bank_id=bank.id, sample_indices=top, weights=[float(w) for w in rep.weights],
                   method="vote-weighted" if weighting == "votes" else rep.method, png=encode_png(rep.image),
                   n_samples=len(top), n_submissions=len(votes), lr_psnr=float(rep.lr_psnr),
                   lr_psnr_before=float(rep.lr_psnr_before), consistency_mse=float(rep.consistency_mse),
                   flow_consistency=None if rep.flow_consistency is None else float(rep.flow_consistency),
                   reprojected=bool(rep.reprojected))
    session.add(row)
    session.flush()
    record(session, "ensemble.created", "ensemble", row.id, actor_id=actor_id, project_id=project.id,
           image_id=image_id, samples=top, lr_psnr=row.lr_psnr, reprojected=row.reprojected)
    return _result(row, image_id)


def voted_images(session: Session, project_id: int, *, include_excluded: bool = False) -> list[int]:
    """The ids of the project's images that have votes (those an ensemble can be made for), ascending."""
    return sorted({v.image for v in load_votes(session, project_id, include_excluded=include_excluded)})


def make_ensembles(session: Session, engine: SREngine, project_id: int, **kwargs: Any) -> list[EnsembleResult]:
    """An ensemble for every image of the project that has votes."""
    image_ids = voted_images(session, project_id, include_excluded=kwargs.get("include_excluded", False))
    return [make_ensemble(session, engine, i, **kwargs) for i in image_ids]


def latest_ensembles(session: Session, project_id: int) -> dict[int, EnsembleResult]:
    """image id -> its newest ensemble."""
    rows = session.execute(select(Ensemble, LRImage.id).join(Bank, Bank.id == Ensemble.bank_id)
                           .join(LRImage, LRImage.id == Bank.image_id).where(LRImage.project_id == project_id)
                           .order_by(Ensemble.id)).all()
    return {img: _result(e, img) for e, img in rows}
