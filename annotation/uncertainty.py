"""Visible uncertainty of a bank as PNGs for the analyst view and the ensembles export: the per-pixel
standard deviation over the bank and its first three principal components as mean -/+ 2 sigma images, with the
share of the bank's variance each explains (:func:`sr_engine.uncertainty.bank_uncertainty`). Analysts only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Sample
from sr_engine.uncertainty import bank_uncertainty

from .banks import complete_bank
from .images import decode_png, encode_png

COMPONENTS = 3


@dataclass(frozen=True)
class UncertaintyView:
    std_png: bytes  # the per-pixel std, stretched to 0..255
    std_max: float  # its largest value before stretching (0..255)
    minus_png: tuple[bytes, ...]  # mean - 2 sigma_k v_k, per component
    plus_png: tuple[bytes, ...]  # mean + 2 sigma_k v_k
    explained: tuple[float, ...]  # the share of the bank's variance per component


def image_uncertainty(session: Session, image_id: int) -> UncertaintyView | None:
    """The uncertainty of the image's complete bank; None while it has none."""
    bank = complete_bank(session, image_id)
    if bank is None:
        return None
    pngs = session.scalars(select(Sample.png).where(Sample.bank_id == bank.id).order_by(Sample.index)).all()
    u = bank_uncertainty(np.stack([decode_png(p) for p in pngs]), COMPONENTS)
    return UncertaintyView(encode_png(u.std), u.std_max, tuple(encode_png(m) for m in u.minus),
                           tuple(encode_png(p) for p in u.plus), u.explained)
