"""Issue 18, finding 1: exports are private. A rater who knows (or guesses) where an analyst's export lies gets
nothing from any file route; the analyst's own link works once, for the analyst only; a rater who sends the
analyst's session hash gets none of the analyst's outputs. Replays the probe against the app in-process."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

pytest.importorskip("gradio_client")

from auth_app import download_tokens, predict, running_app, sign_in  # noqa: E402

READING = "secret-reading-7"  # a vote's reading: what must never reach the rater


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from annotation.tasks import next_task, submit
    from db.engine import session_scope

    data = tmp_path_factory.mktemp("auth-exports")
    with running_app(data) as (url, ctx, pid):
        with session_scope(ctx.factory) as s:
            from annotation.accounts import rater_by_name

            rob = rater_by_name(s, "rob").id
            t = next_task(s, rob, pid)
            submit(s, rob, t.assignment_id, [x.sample_id for x in t.samples[:2]], READING)
        yield url, ctx, pid, data


def _export(url, pid, what="votes", fmt="csv"):
    ana = sign_in(url, "ana")
    html, _message = predict(url, ana, "/export", pid, what, fmt)
    return ana, html, download_tokens(html)


def _files(data):
    return [p for p in data.rglob("*") if p.is_file() and "project-" in p.name]


def test_a_rater_gets_no_export_from_any_file_route(served):
    url, ctx, pid, data = served
    _, html, tokens = _export(url, pid)
    files = _files(data)
    assert files, "the export waits on disk for its download"
    rita = sign_in(url, "rita")
    for path in files:  # the rater knows every file's full path, as if she had guessed it
        for route in (f"gradio_api/file={path}", f"file={path}", f"gradio_api/file/{path}",
                      f"gradio_api/file={path.relative_to(data)}", f"gradio_api/proxy={path}"):
            r = rita.get(route)
            assert 400 <= r.status_code < 500, (route, r.status_code)
            assert READING not in r.text and "rater_id" not in r.text
    assert len(tokens) == 1  # one zip: the table and its provenance
    for token in tokens:  # and the links themselves
        r = rita.get(f"private-download/{token}")
        assert r.status_code == 403 and READING not in r.text
    # an upload by the rater does not reach it either
    r = rita.post("gradio_api/upload", files={"files": ("x.csv", b"a,b\n")})
    assert READING not in r.text
    # nobody signed in: 401
    import httpx

    assert httpx.get(f"{url}private-download/{tokens[0]}").status_code == 401


def test_the_analyst_downloads_once_from_a_private_folder(served):
    url, ctx, pid, data = served
    ana, html, tokens = _export(url, pid)
    table = next(p for p in _files(data) if p.name == f"project-{pid}-votes-csv.zip" and tokens[0] in str(p))
    assert stat.S_IMODE(table.stat().st_mode) == 0o600 and stat.S_IMODE(table.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(table.parent.parent.stat().st_mode) == 0o700  # the account's folder
    assert not any(data.glob("exports/**/*.csv"))  # nothing in the old shared, predictable folder
    other_analyst = sign_in(url, "admin")  # an admin may export too, but not fetch ana's link
    assert other_analyst.get(f"private-download/{tokens[0]}").status_code == 404
    r = ana.get(f"private-download/{tokens[0]}")
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert READING in zf.read("votes.csv").decode()
        assert "model" in zf.read("votes.csv.provenance.json").decode()
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.headers["cache-control"] == "no-store"
    assert ana.get(f"private-download/{tokens[0]}").status_code == 404  # once
    assert not table.exists()


def test_exports_expire_and_are_swept(served):
    url, ctx, pid, data = served
    from annotation.downloads import PrivateDownloads

    now = [0.0]
    d = PrivateDownloads(data / "sweep-test", ttl_s=10, clock=lambda: now[0])
    t = d.new(1, "ana", "x.csv")
    t.path.write_text("votes")
    d.publish(t)
    now[0] = 11.0
    assert d.claim(t.token, 1) is None and not t.folder.exists()  # expired
    t2 = d.new(1, "ana", "y.csv")
    t2.path.write_text("votes")
    d.publish(t2)
    now[0] = 30.0
    d.new(2, "bob", "z.csv")  # each new export sweeps the expired ones
    assert not t2.folder.exists()
    left = d.new(1, "ana", "w.csv")
    assert PrivateDownloads(data / "sweep-test").sweep() >= 1  # a new process knows no ticket: it removes all
    assert not left.folder.exists()


def test_a_session_hash_belongs_to_its_account(served):
    url, ctx, pid, _ = served
    ana = sign_in(url, "ana")
    rita = sign_in(url, "rita")
    hash_ = "analystsession1"
    fn = next(i for i, d in ctx_fns(url, ana) if d == "analyst_overview")
    body = {"data": [pid], "fn_index": fn, "session_hash": hash_, "event_data": None, "trigger_id": None}
    assert ana.post("gradio_api/queue/join", json=body).status_code == 200
    # the rater sends the analyst's session hash: refused at join and when reading the stream
    assert rita.post("gradio_api/queue/join", json=body).status_code == 403
    r = rita.get("gradio_api/queue/data", params={"session_hash": hash_})
    assert r.status_code == 403 and "sec" not in r.text
    assert rita.get(f"gradio_api/heartbeat/{hash_}").status_code == 403
    r = rita.post("gradio_api/call/next_task", json={"data": [pid], "session_hash": hash_})
    assert r.status_code == 403
    with ana.stream("GET", "gradio_api/queue/data", params={"session_hash": hash_}) as r:
        assert r.status_code == 200
        text = ""
        for line in r.iter_lines():
            text += line
            if "process_completed" in line:
                break
    assert "sec" in text  # the analyst gets the overview of project "sec"


def ctx_fns(url, http):
    cfg = http.get("config").json()
    return [(d["id"], d.get("api_name")) for d in cfg["dependencies"]]
