"""The app through its HTTP API (gradio_client), as any script could call it: roles are checked on the server,
a submission through the API stores the vote, bad picks are refused. The app runs in-process on a free port with
a tiny engine and a throwaway SQLite file."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from conftest import seeded_project, serve_app, wait_for_banks  # noqa: E402

PASSWORDS = {"admin": "admin-pw-1", "rita": "rater-pw-1", "rob": "rater-pw-2", "ana": "analyst-pw-1"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    accounts = {"rita": ("rater", PASSWORDS["rita"]), "rob": ("rater", PASSWORDS["rob"]),
                "ana": ("analyst", PASSWORDS["ana"])}
    with serve_app(tmp_path_factory.mktemp("app-api"), PASSWORDS["admin"], accounts, n_images=3,
                   project="api") as served:
        yield served


def client(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORDS[name]), verbose=False)


def test_wrong_password_cannot_connect(served):
    url, _, _ = served
    with pytest.raises(Exception):  # noqa: B017 (gradio_client raises a different type per failure path)
        Client(url, auth=("rita", "not-her-password"), verbose=False)


def test_rater_is_refused_analyst_and_admin_endpoints(served):
    url, ctx, pid = served
    from annotation.accounts import rater_by_name
    from annotation.errors import NotFound
    from db.engine import session_scope

    c = client(url, "rita")
    calls = [("/analyst_overview", (pid,)), ("/analyst_image", (1,)), ("/make_ensemble", (1,)),
             ("/export", (pid, "votes", "csv")), ("/make_all_ensembles", (pid,)), ("/generate_banks", (pid,)),
             ("/bank_progress", (pid,)), ("/set_guidelines", (pid, "read carefully")),
             ("/add_rater", ("mallory", "admin", "pw")), ("/exclude_rater", (pid, "rob", "x")),
             ("/include_rater", (pid, "rob", "")), ("/list_accounts", ()), ("/deactivate_account", ("ana",)),
             ("/activate_account", ("rob",)), ("/reset_password", ("ana",)), ("/remove_image", (pid, 1)),
             ("/remove_bank", (pid, 1)), ("/upload_images", (pid, [])),
             ("/create_project", ("evil", "tiny-x4", "strict", "ddim", 8, 2, 3, 2, 2, 0, 0.0, "", 128))]
    for api_name, args in calls:
        with pytest.raises(AppError, match="Not allowed"):
            c.predict(*args, api_name=api_name)
    with session_scope(ctx.factory) as s, pytest.raises(NotFound):
        rater_by_name(s, "mallory")
    # an analyst may read but not administer
    a = client(url, "ana")
    overview = a.predict(pid, api_name="/analyst_overview")
    assert "api" in overview[0]
    with pytest.raises(AppError, match="Not allowed"):
        a.predict("mallory", "admin", "pw", api_name="/add_rater")


def test_submit_through_the_api_stores_the_vote(served):
    url, ctx, pid = served
    from db.engine import session_scope
    from db.models import Assignment, AssignmentStatus, Pick, Reading

    c = client(url, "rob")
    out = c.predict(pid, api_name="/next_task")
    sids = [int(x) for x in re.findall(r"data-sid='(\d+)'", out[1])]
    assert len(sids) == 8 and "0 of 2 done" not in out[5]
    with pytest.raises(AppError, match="pick exactly 2"):
        c.predict(str(sids[0]), "", api_name="/submit")
    with pytest.raises(AppError, match="not in this task(&#x27;|')s bank"):  # toasts are HTML: text escaped
        c.predict("999999,999998", "", api_name="/submit")
    out = c.predict(f"{sids[3]},{sids[1]}", "a 5", api_name="/submit")
    assert "Saved." in out[5]
    with session_scope(ctx.factory) as s:
        a = s.scalars(select(Assignment).where(Assignment.status == AssignmentStatus.submitted)).one()
        assert s.scalars(select(Pick.sample_id).where(Pick.assignment_id == a.id).order_by(Pick.rank)).all() == [
            sids[3], sids[1]]
        assert s.scalar(select(Reading.text).where(Reading.assignment_id == a.id)) == "a 5"
        rob_id = a.rater_id
    # the analyst sees the vote; another rater's task never carries it
    detail = client(url, "ana").predict(a.image_id, api_name="/analyst_image")
    assert "rob" in str(detail[5]) and "a 5" in detail[4]
    other = client(url, "rita").predict(pid, api_name="/next_task")
    assert "rob" not in "".join(map(str, other)) and "a 5" not in "".join(map(str, other))
    assert rob_id != 0


def test_skip_with_a_reason_and_the_end_message(served):
    url, ctx, pid = served
    c = client(url, "rita")
    out = c.predict(pid, api_name="/next_task")
    for _ in range(5):
        if "Nothing left" in out[5]:
            break
        out = c.predict("can't tell", api_name="/skip")
    assert "Nothing left to rate" in out[5]
    assert re.search(r"(\d+) of \1 done", out[4])


def test_admin_creates_a_project_uploads_and_generates_banks(served, tmp_path):
    url, ctx, _ = served
    from gradio_client import handle_file
    from PIL import Image

    from conftest import tiny_lr_images

    paths = []
    for i, img in enumerate(tiny_lr_images(2, seed=77)):
        paths.append(tmp_path / f"lr-{i}.png")
        Image.fromarray(img).save(paths[-1])
    c = client(url, "admin")
    settings = ("tiny-x4", "strict", "ddim", 8, 2, 2, 2, 2, 0, 0.0, "", 128)  # ..., prompt, LR size limit
    msg, _, _ = c.predict("uploaded", *settings, api_name="/create_project")
    pid = int(re.search(r"id (\d+)", msg).group(1))
    msg, _, _ = c.predict("uploaded", *settings, api_name="/create_project")  # refused: beside the button
    assert "sr-error" in msg and "already exists" in msg, msg
    msg, _, _ = c.predict("pooled", *settings, 0, 0.95, 3, api_name="/create_project")  # min raters, threshold, pool
    with ctx.tx(write=False) as s:
        from annotation.projects import get_project

        assert get_project(s, "pooled").pool_factor == 3, msg
    msg, _ = c.predict(pid, [handle_file(str(p)) for p in paths], api_name="/upload_images")
    assert "Imported 2 image(s)" in msg
    c.predict(pid, api_name="/generate_banks")
    progress = wait_for_banks(c, pid, 2, ctx.worker)
    assert "2 of 2 banks complete" in progress, progress
    msg, _ = c.predict("newbie", "rater", "pw-newbie", api_name="/add_rater")
    assert "Added rater newbie" in msg
    Client(url, auth=("newbie", "pw-newbie"), verbose=False)  # the new account can sign in


def test_analyst_exports_download(served):
    """An export is a one-time private link (issue 18): the analyst's own cookie fetches it, once."""
    url, _, pid = served
    import io
    import zipfile

    import httpx
    import pandas as pd

    a = client(url, "ana")
    http = httpx.Client(base_url=url, cookies=a.cookies, timeout=30)
    html, msg = a.predict(pid, "votes", "csv", api_name="/export")  # one zip: the table and its provenance
    assert "Exported" in msg
    token = re.search(r"href='private-download/([A-Za-z0-9_-]+)' download='project-\d+-votes-csv.zip'", html).group(1)
    r = http.get(f"private-download/{token}")
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert sorted(zf.namelist()) == ["votes.csv", "votes.csv.provenance.json"]
        df = pd.read_csv(zf.open("votes.csv"))
    assert list(df.columns)[:3] == ["project", "image_id", "image_source"]
    assert http.get(f"private-download/{token}").status_code == 404  # once
    msg = a.predict(pid, api_name="/make_all_ensembles")  # every voted image, before the ensembles zip
    assert "ensemble(s) computed" in msg or "No votes yet" in msg, msg
    html, _ = a.predict(pid, "ensembles", "json", api_name="/export")
    token = re.search(r"href='private-download/([A-Za-z0-9_-]+)' download='project-\d+-ensembles.zip'", html).group(1)
    assert http.get(f"private-download/{token}").content[:2] == b"PK"


def test_analyst_excludes_and_includes_a_rater(served):
    url, ctx, pid = served
    from annotation.accounts import rater_by_name
    from annotation.exclusions import excluded_rater_ids
    from db.engine import session_scope

    a = client(url, "ana")
    with pytest.raises(AppError):
        a.predict(pid, "nobody-by-that-name", "x", api_name="/exclude_rater")
    refits = ctx.refit.refits
    overview, raters = a.predict(pid, "rita", "failed gold items", api_name="/exclude_rater")
    with session_scope(ctx.factory) as s:
        rita = rater_by_name(s, "rita").id
        assert rita in excluded_rater_ids(s, pid)
    assert ctx.refit.idle(60) and ctx.refit.refits > refits  # the resolved flags follow the exclusion at once
    a.predict(pid, "rita", "", api_name="/include_rater")
    with session_scope(ctx.factory) as s:
        assert rita not in excluded_rater_ids(s, pid)


def test_rater_revises_the_last_submission(served):
    url, ctx, pid = served
    from db.engine import session_scope
    from db.models import Assignment, Pick, Reading

    c = client(url, "rob")
    out = c.predict(pid, api_name="/next_task")
    sids = [int(x) for x in re.findall(r"data-sid='(\d+)'", out[1])]
    c.predict(f"{sids[0]},{sids[2]}", "a 6", api_name="/submit")
    out = c.predict(pid, api_name="/revise_last")
    assert out[2] == f"{sids[0]},{sids[2]}" and out[6] == "a 6" and "Revising task" in out[5]
    assert "data-rank='1'" in out[1] and "data-rank='2'" in out[1]
    out = c.predict(f"{sids[4]},{sids[0]}", "a 5", api_name="/submit")
    assert "Revised." in out[5]
    with session_scope(ctx.factory) as s:
        a = s.scalars(select(Assignment).join(Pick, Pick.assignment_id == Assignment.id)
                      .where(Pick.sample_id == sids[4])).one()
        assert a.revisions == 1
        assert s.scalars(select(Pick.sample_id).where(Pick.assignment_id == a.id).order_by(Pick.rank)).all() == [
            sids[4], sids[0]]
        assert s.scalar(select(Reading.text).where(Reading.assignment_id == a.id)) == "a 5"
    # another rater has nothing of rob's to revise
    with pytest.raises(AppError, match="Nothing to revise"):
        client(url, "rita").predict(pid, api_name="/revise_last")


def test_analyst_sees_readings_per_position(served):
    """Plate-like readings: the analyst's image view carries the per-position bars, consensus and text."""
    url, ctx, _ = served
    from annotation.accounts import create_rater
    from annotation.tasks import next_task, submit
    from db.engine import session_scope

    pid = seeded_project(ctx.factory, ctx.engines.get("tiny-x4"), n_images=1, name="plates-api")
    with session_scope(ctx.factory) as s:
        raters = [create_rater(s, f"plate-rater-{i}").id for i in range(3)]
    for rid, reading in zip(raters, ["8B0D12", "8b0d1", "88OD12"]):
        with session_scope(ctx.factory) as s:
            t = next_task(s, rid, pid)
            submit(s, rid, t.assignment_id, [x.sample_id for x in t.samples[:2]], reading)
    out = client(url, "ana").predict(t.image_id, api_name="/analyst_image")
    assert len(out) == 7 and "8b0d1" in str(out[5])  # the votes table keeps the reading verbatim
    assert "consensus <b>8B0D12</b>" in out[6] and "pos 2: B 2 of 3, 8 1 of 3" in out[6]
    assert "pos 6: 2 2 of 3, gap 1 of 3" in out[6] and out[6].count("class='sr-pos-col") == 6
