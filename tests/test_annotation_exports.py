"""Ensembles of the most-voted samples, and exports: votes (one row per pick), the per-image summary and the
ensembles zip, as CSV, JSON and Parquet, read back with pandas and compared; provenance; exclusions honoured;
names and readings with quotes, HTML and SQL exported verbatim; `python -m annotation export`."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from annotation.accounts import create_rater
from annotation.analysis import image_aggregates, load_votes, project_agreement
from annotation.ensembles import latest_ensembles, make_ensemble, make_ensembles
from annotation.errors import InvalidInput, PermissionDenied
from annotation.exclusions import exclude_rater, include_rater
from annotation.exports import LIST_COLUMNS, export, export_bundle, read_table, summary_frame, votes_frame
from annotation.images import decode_png
from annotation.tasks import next_task, skip, submit
from annotation.text import csv_safe
from conftest import make_store, seeded_project, tiny_flow_engine
from db.engine import session_scope
from db.models import Sample
from sr_engine.metrics import CONSISTENT_DB

NASTY = ["O'Brien \"the rater\"", "<b>bold</b><script>alert(1)</script>", "x'); DROP TABLE picks;--",
         "=1+1, semicolon; ünïcödé \\N"]
READINGS = ["5", "5", "<i>6</i>", "5'; DELETE FROM readings;--"]


@pytest.fixture(scope="module")
def engine():
    return tiny_flow_engine()


@pytest.fixture(scope="module")
def voted(engine, tmp_path_factory):
    """A file database with 2 images, 4 raters (nasty names) who each voted on both."""
    path = tmp_path_factory.mktemp("exports") / "store.sqlite"
    eng, factory = make_store(f"sqlite:///{path}")
    pid = seeded_project(factory, engine, n_images=2, raters_per_image=4, k_picks=2, ensemble_size=2,
                         name="exp \"q\"")
    with session_scope(factory) as s:
        raters = [create_rater(s, n).id for n in NASTY]
        analyst = create_rater(s, "ana", "analyst").id
    for i, rid in enumerate(raters):
        for _ in range(2):
            with session_scope(factory) as s:
                t = next_task(s, rid, pid)
                by_index = {x.index: x.sample_id for x in t.samples}
                picks = [by_index[0], by_index[1 + i % 3]]  # everyone likes sample 0; then 1, 2, 3, 1
                submit(s, rid, t.assignment_id, picks, READINGS[i])
    yield factory, pid, raters, analyst, url_of(path)
    eng.dispose()


def url_of(path):
    return f"sqlite:///{path}"


def test_ensemble_of_the_most_voted(voted, engine):
    factory, pid, raters, _, _ = voted
    with session_scope(factory) as s:
        aggs = image_aggregates(s, pid)
        image_id = min(aggs)
        assert aggs[image_id].approval[:4] == [4, 2, 1, 1] and aggs[image_id].top == [0, 1]
        res = make_ensemble(s, engine, image_id)
        assert res.sample_indices == [0, 1] and res.weights == [0.5, 0.5] and res.method == "pixel-mean"
        assert res.n_submissions == 4 and res.lr_psnr >= CONSISTENT_DB and not res.reprojected
        assert res.flow_consistency is not None and res.flow_consistency >= 0
        samples = {x.index: decode_png(x.png) for x in s.query(Sample).filter(Sample.bank_id == res.bank_id)}
        mean = (samples[0].astype(float) + samples[1]) / 2
        assert np.abs(decode_png(res.png).astype(float) - mean).max() <= 1.0
        weighted = make_ensemble(s, engine, image_id, m=3, weighting="votes")
        assert weighted.sample_indices == [0, 1, 2] and weighted.weights == pytest.approx([4 / 7, 2 / 7, 1 / 7])
        assert latest_ensembles(s, pid)[image_id].ensemble_id == weighted.ensemble_id
        with pytest.raises(InvalidInput):
            make_ensemble(s, tiny_flow_engine(name="other-x4"), image_id)
        with pytest.raises(InvalidInput):
            make_ensemble(s, engine, image_id, m=0)


def test_an_inconsistent_ensemble_is_reprojected(engine, tmp_path):
    eng, factory = make_store("sqlite://")
    pid = seeded_project(factory, engine, n_images=1, mode="flow", raters_per_image=2, name="flowmode")
    with session_scope(factory) as s:
        raters = [create_rater(s, f"f{i}").id for i in range(2)]
    for rid in raters:
        with session_scope(factory) as s:
            t = next_task(s, rid, pid)
            submit(s, rid, t.assignment_id, [t.samples[0].sample_id, t.samples[1].sample_id])
    with session_scope(factory) as s:
        (res,) = make_ensembles(s, engine, pid)
    assert res.lr_psnr_before < CONSISTENT_DB  # an untrained flow without projection is far from D x = y
    assert res.reprojected and res.lr_psnr >= CONSISTENT_DB
    eng.dispose()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_votes_export_reads_back(voted, tmp_path, fmt):
    factory, pid, raters, _, _ = voted
    with session_scope(factory) as s:
        df = votes_frame(s, pid)
        res = export(s, pid, "votes", fmt, tmp_path / f"votes.{fmt}")
    assert res.rows == len(df) == 16  # 4 raters x 2 images x 2 picks
    assert list(df["rank"]) == [1, 2] * 8
    assert set(df["rater"]) == set(NASTY) and set(df["reading"]) == set(READINGS)
    assert (df["seconds_on_task"] >= 0).all() and df["submitted_at"].notna().all()
    back = read_table(res.path, fmt)
    _assert_same(df, back, fmt)
    prov = json.loads(res.provenance_path.read_text())
    _check_provenance(prov)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_summary_export_reads_back(voted, engine, tmp_path, fmt):
    factory, pid, *_ = voted
    with session_scope(factory) as s:
        make_ensembles(s, engine, pid)
        df = summary_frame(s, pid)
        res = export(s, pid, "summary", fmt, tmp_path / f"summary.{fmt}")
    assert len(df) == 2 and (df["n_votes"] == 4).all()
    row = df.iloc[0]
    assert row["votes"][:4] == [4, 2, 1, 1] and row["top"] == [0, 1]
    assert row["consensus_reading"] == "5" and row["consensus_count"] == 2 and row["consensus_share"] == 0.5
    assert row["ensemble_lr_psnr"] >= CONSISTENT_DB and bool(row["ensemble_current"])
    assert -1 <= row["alpha_picks"] <= 1
    _assert_same(df, read_table(res.path, fmt), fmt)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        _check_provenance(json.loads(pq.read_schema(res.path).metadata[b"provenance"]))


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_ensembles_zip(voted, engine, tmp_path, fmt):
    factory, pid, *_ = voted
    with session_scope(factory) as s:
        made = make_ensembles(s, engine, pid)
        res = export(s, pid, "ensembles", fmt, tmp_path / "ens.zip")
    assert res.rows == 2
    with zipfile.ZipFile(res.path) as zf:
        names = sorted(n for n in zf.namelist() if not n.startswith("uncertainty/"))
        assert names == sorted([f"ensembles/image-{m.image_id}.png" for m in made]
                               + [f"manifest.{fmt}", "provenance.json"])
        extra = {n for n in zf.namelist() if n.startswith("uncertainty/")}  # issue 16: std and components
        assert {f"uncertainty/image-{m.image_id}-std.png" for m in made} <= extra
        data = zf.read(f"manifest.{fmt}")
        manifest = read_table(io.BytesIO(data), fmt)
        for m in made:
            assert zf.read(f"ensembles/image-{m.image_id}.png") == m.png
        _check_provenance(json.loads(zf.read("provenance.json")))
    assert sorted(manifest["image_id"]) == sorted(m.image_id for m in made)
    assert (manifest["lr_psnr"] >= CONSISTENT_DB).all()
    assert all(isinstance(x, list) and len(x) == 2 for x in manifest["samples"])
    for shares, files in zip(manifest["pc_explained"], manifest["uncertainty_files"]):  # issue 16
        assert 0 < sum(shares) <= 1 + 1e-6 and len(files) == 1 + 2 * len(shares)


def test_exclusions_are_honoured(voted, tmp_path):
    factory, pid, raters, analyst, _ = voted
    with session_scope(factory) as s:
        with pytest.raises(PermissionDenied):
            exclude_rater(s, raters[1], pid, raters[0], "raters may not exclude")
        exclude_rater(s, analyst, pid, raters[0], "failed gold items")
    try:
        with session_scope(factory) as s:
            assert {v.rater for v in load_votes(s, pid)} == set(raters[1:])
            assert len(load_votes(s, pid, include_excluded=True)) == 8
            df = votes_frame(s, pid)
            assert NASTY[0] not in set(df["rater"]) and len(df) == 12
            assert len(votes_frame(s, pid, include_excluded=True)) == 16
            summary = summary_frame(s, pid)
            assert (summary["n_votes"] == 3).all()
            assert [r.rater for r in project_agreement(s, pid).raters] == raters[1:]
            res = export(s, pid, "votes", "csv", tmp_path / "v.csv")
            prov = json.loads(res.provenance_path.read_text())
            assert prov["excluded_raters"] == [{"name": NASTY[0], "reason": "failed gold items"}]
    finally:
        with session_scope(factory) as s:
            include_rater(s, analyst, pid, raters[0])


def test_cli_export(voted, tmp_path):
    from annotation.__main__ import main

    factory, pid, _, _, url = voted
    out = tmp_path / "cli-votes.parquet"
    assert main(["export", "--db-url", url, "--project", 'exp "q"', "--what", "votes", "--format", "parquet",
                 "--out", str(out)]) == 0
    back = pd.read_parquet(out)
    assert len(back) == 16 and set(back["reading"]) == set(READINGS)
    assert main(["export", "--db-url", url, "--project", "missing", "--what", "votes", "--out",
                 str(tmp_path / "x.csv")]) == 2


@pytest.fixture(scope="module")
def digits(engine, tmp_path_factory):
    """One image read as digits only ("0", "8", missing) and one skip with its reason: the shapes that loaded
    as float and without a time zone before."""
    path = tmp_path_factory.mktemp("digits") / "store.sqlite"
    eng, factory = make_store(f"sqlite:///{path}")
    pid = seeded_project(factory, engine, n_images=2, raters_per_image=5, k_picks=2, name="digits")
    with session_scope(factory) as s:
        raters = [create_rater(s, f"d{i}").id for i in range(5)]
    for rid, reading in zip(raters, ["0", "8", None, "0"]):
        for _ in range(2):
            with session_scope(factory) as s:
                t = next_task(s, rid, pid)
                by_index = {x.index: x.sample_id for x in t.samples}
                submit(s, rid, t.assignment_id, [by_index[0], by_index[2]], reading)
    with session_scope(factory) as s:
        t = next_task(s, raters[4], pid)
        skip(s, raters[4], t.assignment_id, "cannot tell 0 from 8")
    with session_scope(factory) as s:
        make_ensembles(s, engine, pid)
    yield factory, pid
    eng.dispose()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_exports_load_cleanly_with_pandas(digits, tmp_path, fmt):
    """Readings load as strings, timestamps as time-zone-aware UTC, list columns as lists, skip reasons exported;
    with plain pandas calls and with ``read_table``."""
    import pyarrow.parquet as pq

    factory, pid = digits
    with session_scope(factory) as s:
        files = {w: export(s, pid, w, fmt, tmp_path / f"{w}.{fmt}").path for w in ("votes", "summary", "skips")}
    plain = {"csv": lambda f: pd.read_csv(f, dtype={"reading": str, "consensus_reading": str, "label": str}),
             "json": lambda f: pd.read_json(f, orient="records", dtype=False),
             "parquet": pd.read_parquet}[fmt]
    votes, summary, skips = (plain(files[w]) for w in ("votes", "summary", "skips"))
    readings = [x for x in votes["reading"] if isinstance(x, str)]
    assert sorted(readings) == ["0"] * 8 + ["8"] * 4 and votes["reading"].isna().sum() == 4
    assert skips["reason"].tolist() == ["cannot tell 0 from 8"]
    for col in ("served_at", "submitted_at"):
        times = pd.to_datetime(votes[col], format="ISO8601") if fmt != "parquet" else votes[col]
        assert str(times.dt.tz) == "UTC", (fmt, col)
    if fmt == "csv":
        head = files["votes"].read_text().splitlines()[1]
        assert "+00:00" in head and "T" in head.split(",")[VOTE_COLUMNS_INDEX["served_at"]]
        assert json.loads(summary["votes"][0])[:3] == [4, 0, 4]  # CSV keeps lists as JSON text
    elif fmt == "json":
        assert summary["votes"][0][:3] == [4, 0, 4] and isinstance(summary["top"][0], list)
        assert json.loads(files["votes"].read_text())[0]["served_at"].endswith("+00:00")
    else:
        schema = pq.read_schema(files["summary"])
        assert str(schema.field("votes").type).startswith("list") and str(schema.field("top").type).startswith("list")
        assert str(pq.read_schema(files["votes"]).field("served_at").type) == "timestamp[us, tz=UTC]"
        assert str(schema.field("consensus_reading").type) in ("string", "large_string")
    for w, f in files.items():  # read_table restores every type, whatever the format
        back = read_table(f, fmt)
        for col in back.columns:
            if col in ("reading", "consensus_reading", "reason", "rater", "label"):
                assert str(back[col].dtype) == "string", (w, col)
            if col.endswith("_at"):
                assert str(back[col].dtype) == "datetime64[us, UTC]", (w, col)
            if col in LIST_COLUMNS:
                assert all(x is None or isinstance(x, list) for x in back[col]), (w, col)
    assert read_table(files["summary"], fmt)["votes"][0][:3] == [4, 0, 4]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_bundle_holds_the_table_and_its_provenance(digits, tmp_path, fmt):
    factory, pid = digits
    with session_scope(factory) as s:
        res = export_bundle(s, pid, "votes", fmt, tmp_path / "votes-bundle.zip")
    with zipfile.ZipFile(res.path) as zf:
        assert sorted(zf.namelist()) == [f"votes.{fmt}", f"votes.{fmt}.provenance.json"]
        prov = json.loads(zf.read(f"votes.{fmt}.provenance.json"))
        back = read_table(io.BytesIO(zf.read(f"votes.{fmt}")), fmt)
    assert prov["project"]["name"] == "digits" and len(back) == res.rows == 16


VOTE_COLUMNS_INDEX = {c: i for i, c in enumerate(["project", "image_id", "image_source", "rater", "rater_id",
                                                   "assignment_id", "sample_index", "sample_id", "rank", "reading",
                                                   "served_at", "submitted_at"])}


def _check_provenance(prov):
    (model,) = prov["models"]
    assert model["model_name"] == "tiny-x4" and model["engine_config"]["name"] == "tiny-x4"
    assert "checkpoint_sha256" in model and "checkpoint_sha256" in model["engine_config"]
    assert prov["package_version"] and prov["sr_engine_version"]
    assert prov["project"]["name"] == 'exp "q"' and prov["project"]["raters_per_image"] == 4


def _assert_same(df: pd.DataFrame, back: pd.DataFrame, fmt: str) -> None:
    """Compare an exported table with what pandas reads back: text verbatim (in CSV, a cell a spreadsheet would
    read as a formula carries a leading quote: annotation.text.csv_safe), numbers equal, times equal."""
    assert list(back.columns) == list(df.columns)
    assert len(back) == len(df)
    for col in df.columns:
        a, b = df[col], back[col]
        if col in LIST_COLUMNS:
            assert list(a) == list(b), col
        elif str(a.dtype) == "string":
            want = [None if pd.isna(x) else (csv_safe(str(x)) if fmt == "csv" else str(x)) for x in a]
            assert want == [None if pd.isna(x) else str(x) for x in b], col
        elif str(a.dtype).startswith("datetime"):
            assert str(a.dtype) == str(b.dtype) == "datetime64[us, UTC]", col
            assert list(a) == list(b), col
        elif str(a.dtype) == "boolean":
            conv = (lambda x: None if pd.isna(x) or x == "" else str(x).lower() in ("true", "1"))  # noqa: E731
            assert [conv(x) for x in a] == [conv(x) for x in b], col
        else:
            x = pd.to_numeric(pd.Series(list(a)), errors="coerce").astype(float).to_numpy()
            y = pd.to_numeric(pd.Series(list(b)), errors="coerce").astype(float).to_numpy()
            np.testing.assert_allclose(x, y, rtol=1e-12, equal_nan=True, err_msg=col)
