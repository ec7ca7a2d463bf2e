"""Exports: the votes (one row per pick), a per-image summary, and a zip of the ensembles, as CSV, JSON or
Parquet through pandas, each with its provenance (model name, checkpoint SHA-256, engine config, package
versions, project settings, exclusions).

    res = export(session, project_id, "votes", "csv", "out/votes.csv")   # also writes out/votes.csv.provenance.json

Text (rater names, readings, sources) is written verbatim: quotes, HTML and SQL are characters, never markup or
commands. Raters excluded by an analyst are left out unless ``include_excluded=True`` (the provenance says which).
Tables read back with ``pandas.read_csv`` / ``read_json(orient="records")`` / ``read_parquet``; list-valued
columns (votes per sample, top samples) are JSON strings in every format, so the three files hold the same table.
The summary carries the readings per position (:mod:`annotation.positions`): ``position_consensus`` (the consensus
string), ``position_alpha`` (Krippendorff's alpha over positions), ``positions`` (a JSON list, one object per
aligned position: label, consensus character, counts per character, ``?`` and gaps) and ``position_text``
("pos 3: B 7 of 9, 8 2 of 9; ..."); the provenance names the alignment method.

``flow_consistency`` / ``ensemble_flow_consistency`` is missing (an empty CSV cell, JSON ``null``, Parquet null;
never the text "None") where the model has no flow to check against, i.e. a diffusers pipeline: the flow check
``||y_hat - y||^2 / dim y`` is not available for such a model, and its consistency is the LR-PSNR against D.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

import sr_engine
from db.models import Assignment, Bank, BankStatus, LRImage, Rater, RaterExclusion, Reading, SampleMode

from .agreement import alpha_on_picks, pairwise_jaccard
from .analysis import image_aggregates, load_votes, pick_rows
from .ensembles import latest_ensembles
from .errors import InvalidInput
from .positions import METHOD as POSITIONS_METHOD
from .positions import PositionalReading
from .projects import get_project
from .text import csv_safe

What = Literal["votes", "summary", "ensembles"]
Format = Literal["csv", "json", "parquet"]
WHATS = ("votes", "summary", "ensembles")
FORMATS = ("csv", "json", "parquet")

VOTE_COLUMNS = ["project", "image_id", "image_source", "rater", "rater_id", "assignment_id", "sample_index",
                "sample_id", "rank", "reading", "served_at", "submitted_at", "seconds_on_task", "revisions"]
SUMMARY_COLUMNS = ["project", "image_id", "image_source", "label", "is_gold", "bank_id", "bank_size", "n_votes",
                   "votes", "borda", "top", "consensus_reading", "consensus_count", "consensus_share",
                   "consensus_tied", "alpha_picks", "jaccard_mean", "ensemble_id", "ensemble_samples",
                   "ensemble_lr_psnr", "ensemble_flow_consistency", "ensemble_reprojected", "ensemble_current",
                   "position_consensus", "position_alpha", "positions", "position_text"]
MANIFEST_COLUMNS = ["image_id", "image_source", "file", "ensemble_id", "bank_id", "samples", "weights", "method",
                    "n_submissions", "lr_psnr", "lr_psnr_before", "consistency_mse", "flow_consistency",
                    "reprojected"]


@dataclass
class ExportResult:
    path: Path
    rows: int
    provenance_path: Path | None  # the sidecar (tables); inside the zip for ensembles


def _package_version() -> str:
    try:
        return version("trustworthy-sr")
    except PackageNotFoundError:
        return sr_engine.__version__


def provenance(session: Session, project_id: int, *, include_excluded: bool = False) -> dict:
    """What produced the numbers: the models and engine configs of the project's complete banks, versions,
    settings and exclusions."""
    project = get_project(session, project_id)
    models = {}
    for name, sha, config in session.execute(
            select(Bank.model_name, Bank.checkpoint_sha256, Bank.engine_config).join(LRImage)
            .where(LRImage.project_id == project_id, Bank.status == BankStatus.complete)):
        key = json.dumps([name, sha, config], sort_keys=True, default=str)
        models[key] = {"model_name": name, "checkpoint_sha256": sha, "engine_config": config}
    settings = {c: getattr(project, c) for c in ("name", "model_name", "scale", "channels", "bank_size", "k_picks",
                                                 "raters_per_image", "ensemble_size", "steps", "scheduler", "seed",
                                                 "gold_rate", "revision_window_s", "lease_s", "max_lr_side",
                                                 "engine_options")}
    settings["mode"] = SampleMode(project.mode).value
    excluded = session.execute(select(Rater.name, RaterExclusion.reason).join(
        Rater, Rater.id == RaterExclusion.rater_id).where(RaterExclusion.project_id == project_id)
        .order_by(Rater.name)).all()
    return {"project": settings, "models": list(models.values()), "package": "trustworthy-sr",
            "package_version": _package_version(), "sr_engine_version": sr_engine.__version__,
            "pandas_version": pd.__version__, "exported_at": datetime.now(timezone.utc).isoformat(),
            "excluded_raters": [{"name": n, "reason": r} for n, r in excluded],
            "include_excluded": include_excluded, "reading_positions": POSITIONS_METHOD}


# ---- tables ----------------------------------------------------------------------------------------------------
def votes_frame(session: Session, project_id: int, *, include_excluded: bool = False) -> pd.DataFrame:
    """One row per pick."""
    project = get_project(session, project_id)
    rows = pick_rows(session, project_id, include_excluded=include_excluded)
    aids = sorted({r.assignment_id for r in rows})
    info = {}
    if aids:
        q = (select(Assignment.id, Rater.name, LRImage.source, Reading.text, Assignment.served_at,
                    Assignment.submitted_at, Assignment.seconds_on_task, Assignment.revisions)
             .join(Rater, Rater.id == Assignment.rater_id).join(LRImage, LRImage.id == Assignment.image_id)
             .outerjoin(Reading, Reading.assignment_id == Assignment.id).where(Assignment.id.in_(aids)))
        info = {r[0]: r[1:] for r in session.execute(q)}
    data = []
    for r in rows:
        name, source, reading, served, submitted, seconds, revisions = info[r.assignment_id]
        data.append([project.name, r.image_id, source, name, r.rater_id, r.assignment_id, r.sample_index,
                     r.sample_id, r.rank, reading, served, submitted, seconds, revisions])
    df = pd.DataFrame(data, columns=VOTE_COLUMNS)
    return _typed(df, ints=["image_id", "rater_id", "assignment_id", "sample_index", "sample_id", "rank",
                            "revisions"], floats=["seconds_on_task"], times=["served_at", "submitted_at"],
                  texts=["project", "image_source", "rater", "reading"])


def summary_frame(session: Session, project_id: int, *, include_excluded: bool = False) -> pd.DataFrame:
    """One row per image: votes per sample, most-voted samples, consensus reading and share, alpha on picks,
    pairwise Jaccard, the newest ensemble's figures (``ensemble_current``: made from the current votes) and the
    readings per position (consensus string, alpha over positions, distributions)."""
    project = get_project(session, project_id)
    votes = load_votes(session, project_id, include_excluded=include_excluded)
    aggs = image_aggregates(session, project_id, votes=votes)
    ens = latest_ensembles(session, project_id)
    by_image: dict[int, list] = {}
    for v in votes:
        by_image.setdefault(v.image, []).append(v)
    images = session.execute(select(LRImage, Bank).outerjoin(Bank, (Bank.image_id == LRImage.id)
                                                             & (Bank.status == BankStatus.complete))
                             .where(LRImage.project_id == project_id).order_by(LRImage.id)).all()
    data = []
    for image, bank in images:
        agg, vs, e = aggs.get(image.id), by_image.get(image.id, []), ens.get(image.id)
        alpha = alpha_on_picks(vs, bank.n) if bank is not None and vs else None
        data.append([
            project.name, image.id, image.source, image.label, bool(image.is_gold),
            bank.id if bank else None, bank.n if bank else None, len(vs),
            json.dumps(agg.approval) if agg else None, json.dumps(agg.borda) if agg else None,
            json.dumps(agg.top) if agg else None,
            agg.consensus.text if agg else None, agg.consensus.count if agg else 0,
            agg.consensus.share if agg else 0.0, agg.consensus.tied if agg else False,
            alpha, pairwise_jaccard(vs) if vs else None,
            e.ensemble_id if e else None, json.dumps(e.sample_indices) if e else None,
            e.lr_psnr if e else None, e.flow_consistency if e else None, e.reprojected if e else None,
            bool(e and agg and e.sample_indices == agg.top and e.n_submissions == len(vs)) if e else None,
            *_position_cells(agg.positions if agg else None)])
    df = pd.DataFrame(data, columns=SUMMARY_COLUMNS)
    return _typed(df, ints=["image_id", "bank_id", "bank_size", "n_votes", "consensus_count", "ensemble_id"],
                  floats=["consensus_share", "alpha_picks", "jaccard_mean", "ensemble_lr_psnr",
                          "ensemble_flow_consistency", "position_alpha"],
                  bools=["is_gold", "consensus_tied", "ensemble_reprojected", "ensemble_current"],
                  texts=["project", "image_source", "label", "votes", "borda", "top", "consensus_reading",
                         "ensemble_samples", "position_consensus", "positions", "position_text"])


def _position_cells(p: PositionalReading | None) -> list:
    """The summary's per-position cells: consensus string, alpha, positions as a JSON list, the "pos i" text."""
    if p is None or p.consensus is None:
        return [None, None, None, None]
    positions = json.dumps([{**asdict(x), "text": x.text} for x in p.positions], ensure_ascii=False)
    return [p.consensus, p.alpha, positions, p.text]


def _typed(df: pd.DataFrame, *, ints=(), floats=(), times=(), bools=(), texts=()) -> pd.DataFrame:
    """Fixed dtypes (nullable where a value can be missing), so every format reads back to the same table."""
    for c in ints:
        df[c] = df[c].astype("Int64")
    for c in floats:
        df[c] = df[c].astype("Float64")
    for c in times:
        df[c] = pd.to_datetime(df[c])
    for c in bools:
        df[c] = df[c].astype("boolean")
    for c in texts:
        df[c] = df[c].astype("string")
    return df


def csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` for a CSV file: every text cell that a spreadsheet would read as a formula (``=HYPERLINK(...)``,
    ``+``, ``-``, ``@``) gets a leading ``'`` (:func:`annotation.text.csv_safe`); JSON and Parquet keep the text
    as it is."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or isinstance(out[c].dtype, pd.StringDtype):
            out[c] = out[c].map(csv_safe, na_action="ignore")
    return out


def write_table(df: pd.DataFrame, path: Path, fmt: Format, prov: dict) -> Path:
    """Write ``df`` and its provenance sidecar ``<path>.provenance.json`` (Parquet also embeds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        csv_frame(df).to_csv(path, index=False)
    elif fmt == "json":
        df.to_json(path, orient="records", date_format="iso", date_unit="us", force_ascii=False, indent=1,
                   double_precision=15)
    elif fmt == "parquet":  # pyarrow loads only for Parquet (a large package the other formats do not need)
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[b"provenance"] = json.dumps(prov, default=str).encode()
        pq.write_table(table.replace_schema_metadata(meta), path)
    else:
        raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")
    side = path.with_name(path.name + ".provenance.json")
    side.write_text(json.dumps(prov, indent=1, default=str, ensure_ascii=False), encoding="utf-8")
    return side


def read_table(path: str | Path, fmt: Format) -> pd.DataFrame:
    """Read an exported table back (JSON: ``orient="records"``, text kept as text)."""
    path = Path(path)
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str)
    if fmt == "json":
        return pd.read_json(path, orient="records", dtype=False)
    if fmt == "parquet":
        return pd.read_parquet(path)
    raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")


# ---- ensembles zip -------------------------------------------------------------------------------------------
def ensembles_zip(session: Session, project_id: int, fmt: Format = "csv", *,
                  include_excluded: bool = False) -> tuple[bytes, int]:
    """A zip of every image's newest ensemble as ``ensembles/image-<id>.png``, a ``manifest.<fmt>`` and
    ``provenance.json``; returns (bytes, number of ensembles)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")
    get_project(session, project_id)
    ens = latest_ensembles(session, project_id)
    sources = dict(session.execute(select(LRImage.id, LRImage.source).where(LRImage.project_id == project_id)).all())
    rows = []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for img in sorted(ens):
            e = ens[img]
            name = f"ensembles/image-{img}.png"
            zf.writestr(name, e.png)
            rows.append([img, sources[img], name, e.ensemble_id, e.bank_id, json.dumps(e.sample_indices),
                         json.dumps(e.weights), e.method, e.n_submissions, e.lr_psnr, e.lr_psnr_before,
                         e.consistency_mse, e.flow_consistency, e.reprojected])
        df = _typed(pd.DataFrame(rows, columns=MANIFEST_COLUMNS),
                    ints=["image_id", "ensemble_id", "bank_id", "n_submissions"],
                    floats=["lr_psnr", "lr_psnr_before", "consistency_mse", "flow_consistency"],
                    bools=["reprojected"], texts=["image_source", "file", "samples", "weights", "method"])
        prov = provenance(session, project_id, include_excluded=include_excluded)
        tmp = io.BytesIO()
        if fmt == "csv":
            tmp.write(csv_frame(df).to_csv(index=False).encode("utf-8"))
        elif fmt == "json":
            tmp.write(df.to_json(orient="records", force_ascii=False, indent=1, double_precision=15).encode("utf-8"))
        else:
            df.to_parquet(tmp, index=False)
        zf.writestr(f"manifest.{fmt}", tmp.getvalue())
        zf.writestr("provenance.json", json.dumps(prov, indent=1, default=str, ensure_ascii=False))
    return buf.getvalue(), len(rows)


# ---- the entry point -------------------------------------------------------------------------------------------
def export(session: Session, project_id: int, what: What, fmt: Format, out: str | Path, *,
           include_excluded: bool = False) -> ExportResult:
    """Write one export to ``out`` (the app and ``python -m annotation export`` both call this)."""
    if what not in WHATS:
        raise InvalidInput(f"what must be one of {WHATS}, got {what!r}")
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    if what == "ensembles":
        data, n = ensembles_zip(session, project_id, fmt, include_excluded=include_excluded)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return ExportResult(out, n, None)
    frame = votes_frame if what == "votes" else summary_frame
    df = frame(session, project_id, include_excluded=include_excluded)
    side = write_table(df, out, fmt, provenance(session, project_id, include_excluded=include_excluded))
    return ExportResult(out, len(df), side)


__all__ = ["export", "votes_frame", "summary_frame", "ensembles_zip", "provenance", "read_table", "write_table",
           "ExportResult"]
