"""Exports: the votes (one row per pick), a per-image summary, the skips (one row per skipped task, with its
reason) and a zip of the ensembles, as CSV, JSON or Parquet through pandas, each with its provenance (model name,
checkpoint SHA-256, engine config, package versions, project settings, exclusions).

    res = export(session, project_id, "votes", "csv", "out/votes.csv")   # also writes out/votes.csv.provenance.json
    export_bundle(session, project_id, "votes", "csv", "out/votes.zip")  # the table and its provenance in one zip

Text (rater names, readings, sources) is written verbatim: quotes, HTML and SQL are characters, never markup or
commands. Raters excluded by an analyst are left out unless ``include_excluded=True`` (the provenance says which).

Types that load cleanly (``read_table`` restores every column's type from any of the three formats):

- readings and other text are strings in every format: JSON strings, Parquet strings, CSV cells that
  ``read_table`` (or ``pandas.read_csv(..., dtype=str)``) reads as text, so the digit "0" never becomes 0.0;
- timestamps are ISO 8601 in UTC with an explicit offset (``2026-12-01T15:33:11.123456+00:00``) in CSV and JSON,
  and ``timestamp[us, tz=UTC]`` in Parquet;
- list columns (``LIST_COLUMNS``: votes and Borda score per sample, the most-voted samples, an ensemble's samples
  and weights, the readings per position) are JSON arrays in JSON, Parquet lists, and JSON text in CSV.

The summary carries the readings per position (:mod:`annotation.positions`): ``position_consensus`` (the consensus
string), ``position_alpha`` (Krippendorff's alpha over positions), ``positions`` (a list, one object per aligned
position: label, consensus character, ``counts`` as a list of ``{"char", "count"}`` objects (most typed first),
``?`` and gaps) and ``position_text`` ("pos 3: B 7 of 9, 8 2 of 9; ..."); the provenance names the alignment
method.

``flow_consistency`` / ``ensemble_flow_consistency`` is missing (an empty CSV cell, JSON ``null``, Parquet null;
never the text "None") where the model has no flow to check against, i.e. a diffusers pipeline: the flow check
``||y_hat - y||^2 / dim y`` is not available for such a model, and its consistency is the LR-PSNR against D.
"""

from __future__ import annotations

import io
import json
import math
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
from db.models import (
    Assignment,
    AssignmentStatus,
    Bank,
    BankStatus,
    LRImage,
    Rater,
    RaterExclusion,
    Reading,
    Sample,
    SampleMode,
)

from .agreement import alpha_on_picks, pairwise_jaccard
from .analysis import image_aggregates, load_votes, pick_rows
from .consensus import ImageResolution, project_consensus
from .ensembles import latest_ensembles
from .errors import InvalidInput
from .positions import METHOD as POSITIONS_METHOD
from .positions import PositionalReading
from .projects import get_project
from .text import csv_safe
from .uncertainty import UncertaintyView, image_uncertainty

What = Literal["votes", "summary", "skips", "ensembles"]
Format = Literal["csv", "json", "parquet"]
WHATS = ("votes", "summary", "skips", "ensembles")
FORMATS = ("csv", "json", "parquet")

VOTE_COLUMNS = ["project", "image_id", "image_source", "rater", "rater_id", "assignment_id", "sample_index",
                "sample_id", "rank", "reading", "served_at", "submitted_at", "seconds_on_task", "revisions",
                "pool_share"]
SUMMARY_COLUMNS = ["project", "image_id", "image_source", "label", "is_gold", "bank_id", "bank_size", "n_votes",
                   "votes", "borda", "top", "consensus_reading", "consensus_count", "consensus_share",
                   "consensus_tied", "alpha_picks", "jaccard_mean", "ensemble_id", "ensemble_samples",
                   "ensemble_lr_psnr", "ensemble_flow_consistency", "ensemble_reprojected", "ensemble_current",
                   "position_consensus", "position_alpha", "positions", "position_text",
                   "majority_reading", "consensus_probability", "resolved", "posterior", "evidence_reader",
                   "evidence", "evidence_text"]
SKIP_COLUMNS = ["project", "image_id", "image_source", "rater", "rater_id", "assignment_id", "reason", "served_at",
                "skipped_at"]
MANIFEST_COLUMNS = ["image_id", "image_source", "file", "ensemble_id", "bank_id", "samples", "weights", "method",
                    "n_submissions", "lr_psnr", "lr_psnr_before", "consistency_mse", "flow_consistency",
                    "reprojected", "uncertainty_files", "pc_explained"]

# Every exported column's type, one table for all exports (a name means the same thing wherever it appears).
COLUMN_KINDS: dict[str, str] = {
    **dict.fromkeys(["image_id", "rater_id", "assignment_id", "sample_index", "sample_id", "rank", "revisions",
                     "bank_id", "bank_size", "n_votes", "consensus_count", "ensemble_id", "n_submissions"], "int"),
    **dict.fromkeys(["seconds_on_task", "consensus_share", "alpha_picks", "jaccard_mean", "ensemble_lr_psnr",
                     "ensemble_flow_consistency", "position_alpha", "lr_psnr", "lr_psnr_before", "consistency_mse",
                     "flow_consistency", "pool_share", "consensus_probability"], "float"),
    **dict.fromkeys(["is_gold", "consensus_tied", "ensemble_reprojected", "ensemble_current", "reprojected",
                     "resolved"], "bool"),
    **dict.fromkeys(["served_at", "submitted_at", "skipped_at"], "time"),
    **dict.fromkeys(["project", "image_source", "rater", "reading", "label", "consensus_reading",
                     "position_consensus", "position_text", "reason", "file", "method", "majority_reading",
                     "evidence_reader", "evidence_text"], "text"),
    **dict.fromkeys(["votes", "borda", "top", "ensemble_samples", "positions", "samples", "weights", "posterior",
                     "evidence", "uncertainty_files", "pc_explained"], "list"),
}
LIST_COLUMNS = tuple(c for c, k in COLUMN_KINDS.items() if k == "list")


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
                                                 "engine_options", "min_raters", "resolve_threshold",
                                                 "pool_factor")}
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
    shares = dict(session.execute(select(Sample.id, Sample.pool_share).where(
        Sample.id.in_({r.sample_id for r in rows}))).all()) if rows else {}
    data = []
    for r in rows:
        name, source, reading, served, submitted, seconds, revisions = info[r.assignment_id]
        data.append([project.name, r.image_id, source, name, r.rater_id, r.assignment_id, r.sample_index,
                     r.sample_id, r.rank, reading, served, submitted, seconds, revisions, shares.get(r.sample_id)])
    return _typed(pd.DataFrame(data, columns=VOTE_COLUMNS))


def skips_frame(session: Session, project_id: int, *, include_excluded: bool = False) -> pd.DataFrame:
    """One row per skipped task: who skipped which image, when, and the reason they gave."""
    project = get_project(session, project_id)
    q = (select(Assignment.image_id, LRImage.source, Rater.name, Assignment.rater_id, Assignment.id,
                Assignment.skip_reason, Assignment.served_at, Assignment.skipped_at)
         .join(Rater, Rater.id == Assignment.rater_id).join(LRImage, LRImage.id == Assignment.image_id)
         .where(Assignment.project_id == project_id, Assignment.status == AssignmentStatus.skipped)
         .order_by(Assignment.skipped_at, Assignment.id))
    if not include_excluded:
        excluded = select(RaterExclusion.rater_id).where(RaterExclusion.project_id == project_id)
        q = q.where(Assignment.rater_id.not_in(excluded))
    data = [[project.name, *row] for row in session.execute(q)]
    return _typed(pd.DataFrame(data, columns=SKIP_COLUMNS))


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
    # the calibrated consensus honours the analyst's exclusions (include_excluded changes only the share columns)
    resolution = project_consensus(session, project_id).images
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
            list(agg.approval) if agg else None, list(agg.borda) if agg else None,
            list(agg.top) if agg else None,
            _reading(resolution.get(image.id), agg), agg.consensus.count if agg else 0,
            agg.consensus.share if agg else 0.0, agg.consensus.tied if agg else False,
            alpha, pairwise_jaccard(vs) if vs else None,
            e.ensemble_id if e else None, list(e.sample_indices) if e else None,
            e.lr_psnr if e else None, e.flow_consistency if e else None, e.reprojected if e else None,
            bool(e and agg and e.sample_indices == agg.top and e.n_submissions == len(vs)) if e else None,
            *_position_cells(agg.positions if agg else None),
            *_trust_cells(resolution.get(image.id), agg.consensus.text if agg else None)])
    return _typed(pd.DataFrame(data, columns=SUMMARY_COLUMNS))


def _reading(r: ImageResolution | None, agg) -> str | None:
    if r is not None:
        return r.reading
    return agg.consensus.text if agg else None


def _trust_cells(r: ImageResolution | None, majority: str | None) -> list:
    """The calibrated consensus and the bank's evidence (``consensus_reading`` is the posterior's
    reading; the share-based one is ``majority_reading``, with ``consensus_count`` / ``consensus_share``).
    ``posterior`` and ``evidence`` are lists of ``{"reading", "probability"}`` / ``{"reading", "count"}`` objects,
    most probable first (one shape in JSON and Parquet alike)."""
    if r is None:
        return [majority, None, False, None, None, None, "not available"]
    # rounded: a nested float goes through JSON at 15 significant digits, so the three formats agree only if short
    posterior = [{"reading": k, "probability": round(v, 6)} for k, v in r.posterior.items()]
    evidence = [{"reading": k, "count": v} for k, v in r.evidence.items()] if r.evidence is not None else None
    return [majority, r.probability, r.resolved, posterior, r.evidence_reader, evidence, r.evidence_text]


def _position_cells(p: PositionalReading | None) -> list:
    """The summary's per-position cells: consensus string, alpha, positions as a list of objects (``counts`` as
    ``{"char", "count"}`` objects, most typed first: one shape in JSON and Parquet alike), the "pos i" text."""
    if p is None or p.consensus is None:
        return [None, None, None, None]
    positions = [{**asdict(x), "counts": [{"char": c, "count": n} for c, n in
                                          sorted(x.counts.items(), key=lambda kv: (-kv[1], kv[0]))],
                  "text": x.text} for x in p.positions]
    return [p.consensus, p.alpha, positions, p.text]


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes by ``COLUMN_KINDS`` (nullable where a value can be missing): whole numbers ``Int64``, reals
    ``Float64``, flags ``boolean``, text ``string``, times ``datetime64[us, UTC]`` (the store keeps naive UTC),
    lists as Python lists (None where missing)."""
    for c in df.columns:
        kind = COLUMN_KINDS[c]
        if kind == "int":
            df[c] = pd.to_numeric(df[c]).astype("Int64") if df[c].dtype == object else df[c].astype("Int64")
        elif kind == "float":
            df[c] = pd.to_numeric(df[c]).astype("Float64") if df[c].dtype == object else df[c].astype("Float64")
        elif kind == "bool":
            df[c] = df[c].map(_as_bool).astype("boolean")
        elif kind == "time":
            t = pd.to_datetime(df[c], utc=False, format="ISO8601") if df[c].dtype == object else df[c]
            t = t.dt.tz_localize("UTC") if t.dt.tz is None else t.dt.tz_convert("UTC")
            df[c] = t.astype("datetime64[us, UTC]")
        elif kind == "text":
            df[c] = df[c].astype("string")
        else:  # list: JSON text (CSV) or an array (Parquet) -> a Python list, recursively
            df[c] = pd.Series([_as_list(x) for x in df[c]], index=df.index, dtype=object)
    return df


def _missing(x) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def _as_bool(x):
    if _missing(x):
        return None
    if isinstance(x, str):
        return None if x == "" else x.strip().lower() in ("true", "1")
    return bool(x)


def _as_list(x):
    """A cell of a list column as plain Python: JSON text parsed, NumPy arrays and nested dicts converted."""
    if _missing(x):
        return None
    if isinstance(x, str):
        return None if x == "" else json.loads(x)
    if hasattr(x, "tolist") and not isinstance(x, dict):
        x = x.tolist()
    if isinstance(x, dict):
        return {k: _as_list(v) if hasattr(v, "tolist") or isinstance(v, (list, dict)) else v for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_as_list(v) if hasattr(v, "tolist") or isinstance(v, (list, dict, tuple)) else v for v in x]
    return x


def _for_text_format(df: pd.DataFrame, fmt: Format) -> pd.DataFrame:
    """What CSV and JSON write: times as ISO 8601 with the UTC offset; lists as JSON text in CSV only."""
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.DatetimeTZDtype):
            out[c] = pd.Series([None if pd.isna(t) else t.isoformat(timespec="microseconds") for t in out[c]],
                               index=out.index, dtype=object)
        elif fmt == "csv" and COLUMN_KINDS.get(c) == "list":
            out[c] = pd.Series([None if x is None else json.dumps(x, ensure_ascii=False) for x in out[c]],
                               index=out.index, dtype=object)
    return out


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
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")
    path.write_bytes(table_bytes(df, fmt, prov))
    side = path.with_name(path.name + ".provenance.json")
    side.write_text(json.dumps(prov, indent=1, default=str, ensure_ascii=False), encoding="utf-8")
    return side


def table_bytes(df: pd.DataFrame, fmt: Format, prov: dict | None = None) -> bytes:
    """``df`` as the bytes of one file in ``fmt`` (Parquet also embeds the provenance in its metadata)."""
    if fmt == "csv":
        return csv_frame(_for_text_format(df, fmt)).to_csv(index=False).encode("utf-8")
    if fmt == "json":
        return _for_text_format(df, fmt).to_json(orient="records", force_ascii=False, indent=1,
                                                 double_precision=15).encode("utf-8")
    if fmt == "parquet":  # pyarrow loads only for Parquet (a large package the other formats do not need)
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        if prov is not None:
            meta[b"provenance"] = json.dumps(prov, default=str).encode()
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(meta), buf)
        return buf.getvalue()
    raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")


def read_table(path: str | Path | io.BytesIO, fmt: Format) -> pd.DataFrame:
    """Read an exported table back with every column's type (``COLUMN_KINDS``): text as strings, times
    time-zone aware (UTC), lists as Python lists, numbers and flags nullable."""
    src = path if isinstance(path, io.BytesIO) else Path(path)
    if fmt == "csv":
        df = pd.read_csv(src, keep_default_na=False, na_values=[""], dtype=str)
    elif fmt == "json":
        df = pd.read_json(src, orient="records", dtype=False)
    elif fmt == "parquet":
        df = pd.read_parquet(src)
    else:
        raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")
    return _typed(df.astype(object).where(df.notna(), None))


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
            files, explained = _write_uncertainty(zf, image_uncertainty(session, img), img)
            rows.append([img, sources[img], name, e.ensemble_id, e.bank_id, list(e.sample_indices),
                         list(e.weights), e.method, e.n_submissions, e.lr_psnr, e.lr_psnr_before,
                         e.consistency_mse, e.flow_consistency, e.reprojected, files, explained])
        df = _typed(pd.DataFrame(rows, columns=MANIFEST_COLUMNS))
        prov = provenance(session, project_id, include_excluded=include_excluded)
        zf.writestr(f"manifest.{fmt}", table_bytes(df, fmt, prov))
        zf.writestr("provenance.json", json.dumps(prov, indent=1, default=str, ensure_ascii=False))
    return buf.getvalue(), len(rows)


def _write_uncertainty(zf: zipfile.ZipFile, u: UncertaintyView | None, img: int) -> tuple[list | None, list | None]:
    """The bank's std and principal-component images beside the ensemble: (the files: std, then each
    component's minus and plus image; the components' variance shares)."""
    if u is None:
        return None, None
    files = [f"uncertainty/image-{img}-std.png"]
    zf.writestr(files[0], u.std_png)
    for k, (m, p) in enumerate(zip(u.minus_png, u.plus_png), start=1):
        for side, png in (("minus", m), ("plus", p)):
            files.append(f"uncertainty/image-{img}-pc{k}-{side}2sigma.png")
            zf.writestr(files[-1], png)
    return files, [round(x, 6) for x in u.explained]


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
    df = FRAMES[what](session, project_id, include_excluded=include_excluded)
    side = write_table(df, out, fmt, provenance(session, project_id, include_excluded=include_excluded))
    return ExportResult(out, len(df), side)


def export_bundle(session: Session, project_id: int, what: What, fmt: Format, out: str | Path, *,
                  include_excluded: bool = False) -> ExportResult:
    """One download: a zip at ``out`` holding the table ``<what>.<fmt>`` and its ``<what>.<fmt>.provenance.json``
    (the ensembles export is a zip with its provenance already, and is written as it is)."""
    if what == "ensembles":
        return export(session, project_id, what, fmt, out, include_excluded=include_excluded)
    if what not in WHATS:
        raise InvalidInput(f"what must be one of {WHATS}, got {what!r}")
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {FORMATS}, got {fmt!r}")
    df = FRAMES[what](session, project_id, include_excluded=include_excluded)
    prov = provenance(session, project_id, include_excluded=include_excluded)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{what}.{fmt}", table_bytes(df, fmt, prov))
        zf.writestr(f"{what}.{fmt}.provenance.json", json.dumps(prov, indent=1, default=str, ensure_ascii=False))
    return ExportResult(out, len(df), None)


FRAMES = {"votes": votes_frame, "summary": summary_frame, "skips": skips_frame}

__all__ = ["COLUMN_KINDS", "LIST_COLUMNS", "ExportResult", "ensembles_zip", "export", "export_bundle", "provenance",
           "read_table", "skips_frame", "summary_frame", "table_bytes", "votes_frame", "write_table"]
