"""Issue 18, findings 1 and 5: a deactivated account's old cookie is refused by /config, the file routes and
upload; a session ends when idle, when its account is deactivated (in the app or by the command line, another
process) and when its password changes (the session that changed it goes on); a generated password must be
changed before anything else; the ``accounts`` command line."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402

from auth_app import PASSWORDS, predict, running_app, sign_in  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("auth-sessions")
    with running_app(data) as (url, ctx, pid):
        yield url, ctx, pid, data


def _refused_everywhere(http, data):
    """The old cookie gets nothing: /config, the file routes and upload answer 401."""
    some_file = next(p for p in data.rglob("*") if p.is_file())
    for method, route, kwargs in [("GET", "config", {}), ("GET", f"gradio_api/file={some_file}", {}),
                                  ("GET", f"gradio_api/file/{some_file}", {}), ("GET", "gradio_api/info", {}),
                                  ("POST", "gradio_api/upload", {"files": {"files": ("a.png", b"x")}})]:
        r = http.request(method, route, **kwargs)
        assert r.status_code == 401, (route, r.status_code, r.text[:200])
    page = http.get("")
    assert '"auth_required":true' in page.text.replace(" ", "")  # the login page, not the app


def _cli(*args, url):
    from annotation.__main__ import main

    return main(["accounts", *args, "--db-url", url, "--log-level", "WARNING"])


def test_a_deactivated_accounts_cookie_is_refused(served):
    url, ctx, pid, data = served
    from annotation.accounts import create_rater, rater_by_name
    from db.engine import session_scope

    with session_scope(ctx.factory) as s:
        create_rater(s, "dora", "rater", "dora-pw-123")
    dora = sign_in(url, "dora", "dora-pw-123")
    assert dora.get("config").status_code == 200
    assert dora.post("gradio_api/upload", files={"files": ("a.png", b"x")}).status_code == 200
    with session_scope(ctx.factory) as s:  # only the store's flag changes (as another process would change it)
        rater_by_name(s, "dora").active = False
    time.sleep(1.2)  # the app reads an account's state at most a second old
    _refused_everywhere(dora, data)
    with pytest.raises(AssertionError):
        sign_in(url, "dora", "dora-pw-123")


def test_the_command_line_ends_a_running_apps_sessions(served, capsys):
    url, ctx, pid, data = served
    db_url = str(ctx.factory.kw["bind"].url)
    assert _cli("add", "--name", "eve", url=db_url) == 0
    pw = capsys.readouterr().out.split("one-time password: ")[1].split()[0]
    eve = sign_in(url, "eve", pw)
    assert eve.get("config").status_code == 200
    assert _cli("deactivate", "--name", "eve", url=db_url) == 0
    assert "deactivated" in capsys.readouterr().out
    time.sleep(1.2)
    assert eve.get("config").status_code == 401
    assert _cli("activate", "--name", "eve", url=db_url) == 0
    assert eve.get("config").status_code == 401  # activating again does not revive an ended session
    assert _cli("reset-password", "--name", "eve", url=db_url) == 0
    new_pw = capsys.readouterr().out.split("new one-time password for 'eve': ")[1].split()[0]
    assert new_pw != pw
    sign_in(url, "eve", new_pw)


def test_changing_a_password_ends_the_other_sessions(served):
    url, ctx, pid, data = served
    here, there = sign_in(url, "rob"), sign_in(url, "rob")
    assert there.get("config").status_code == 200
    with pytest.raises(AppError, match="at least 8"):
        predict(url, here, "/change_password", PASSWORDS["rob"], "short", "short")
    with pytest.raises(AppError, match="current password is wrong"):
        predict(url, here, "/change_password", "not-it-at-all", "rob-new-pw-1", "rob-new-pw-1")
    out = predict(url, here, "/change_password", PASSWORDS["rob"], "rob-new-pw-1", "rob-new-pw-1")
    assert "Password changed" in out[0]
    assert there.get("config").status_code == 401  # at once, no wait
    assert here.get("config").status_code == 200  # the session that changed it goes on
    predict(url, here, "/next_task", pid)  # still allowed to work
    with pytest.raises(AssertionError):
        sign_in(url, "rob")  # the old password
    sign_in(url, "rob", "rob-new-pw-1")


def test_a_one_time_password_must_be_changed_first(served):
    url, ctx, pid, data = served
    admin = sign_in(url, "admin")
    rita_before = sign_in(url, "rita")
    msg = predict(url, admin, "/reset_password", "rita")
    one_time = msg.split("sign-in): ")[1].split("<")[0].strip()
    assert rita_before.get("config").status_code == 401  # a reset ends the sessions at once
    rita = sign_in(url, "rita", one_time)
    for api_name, args in [("/next_task", (pid,)), ("/submit", ("1,2", "")), ("/revise_last", (pid,))]:
        with pytest.raises(AppError, match="one-time password"):
            predict(url, rita, api_name, *args)
    with pytest.raises(AppError, match="differ from the current"):
        predict(url, rita, "/change_password", one_time, one_time, one_time)
    predict(url, rita, "/change_password", one_time, "rita-own-pw-1", "rita-own-pw-1")
    out = predict(url, rita, "/next_task", pid)
    assert "data-sid" in out[1]
    listing = predict(url, admin, "/list_accounts")
    rows = {r[0]: r for r in listing["data"]}
    assert rows["rita"][3] == "" and rows["rita"][4] != "never"


def test_an_idle_session_expires(tmp_path):
    with running_app(tmp_path, session_idle_minutes=0.04) as (url, ctx, pid):  # 2.4 s
        rita = sign_in(url, "rita")
        for _ in range(3):  # in use: it stays
            time.sleep(1.0)
            assert rita.get("config").status_code == 200
        time.sleep(3.0)
        assert rita.get("config").status_code == 401
        assert rita.post("gradio_api/upload", files={"files": ("a.png", b"x")}).status_code == 401


def test_no_run_history(served):
    """Gradio's run history (calls' inputs and outputs kept in the browser, or copied to a hosted bucket that a
    request header names) is off: its page and routes are gone and the page is told so."""
    url, ctx, pid, data = served
    from annotation.accounts import create_rater
    from db.engine import session_scope

    with session_scope(ctx.factory) as s:  # an account of its own (other tests here change rita's password)
        create_rater(s, "nina", "rater", "nina-pw-123")
    nina = sign_in(url, "nina", "nina-pw-123")
    assert nina.get("config").json()["run_history"] is False
    assert nina.get("gradio_api/runs").status_code == 404
    assert nina.post("gradio_api/run-history/connect", json={"bucket": "someone/bucket"}).status_code in (404, 405)


def test_gradios_sign_in_check_runs_on_the_event_loop(served):
    """Gradio's check that an API request is signed in is a plain function, which FastAPI runs in a worker
    thread (a hand-off per request); the app runs that same function on the event loop, and it still refuses a
    request without a session."""
    url, ctx, pid, data = served
    import httpx

    assert sign_in(url, "ana").get("config").status_code == 200
    assert ctx.guard.check_on_loop is True
    anon = httpx.post(f"{url}gradio_api/run/next_task", json={"data": [pid], "session_hash": "anon-1"})
    assert anon.status_code == 401


def test_sign_in_check_on_loop_keeps_gradios_check(tmp_path):
    import inspect

    import gradio as gr
    import httpx

    from conftest import free_port
    from ui.security import sign_in_check_on_loop

    with gr.Blocks() as blocks:
        box = gr.Textbox()
        box.submit(lambda x: x.upper(), box, box, api_name="echo", queue=False)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                  auth=[("u", "pw-123")])
    try:
        assert sign_in_check_on_loop(blocks.app)
        ((check, override),) = blocks.app.dependency_overrides.items()
        assert check.__name__ == "login_check" and not inspect.iscoroutinefunction(check)
        assert inspect.iscoroutinefunction(override)
        url = f"http://127.0.0.1:{port}/"
        body = {"data": ["hi"], "session_hash": "s-1"}
        assert httpx.post(f"{url}gradio_api/run/echo", json=body).status_code == 401
        c = httpx.Client(base_url=url)
        assert c.post("login", data={"username": "u", "password": "pw-123"}).status_code == 200
        r = c.post("gradio_api/run/echo", json=body)
        assert r.status_code == 200 and r.json()["data"] == ["HI"]
    finally:
        blocks.close()


def test_the_first_admins_generated_password_must_be_changed(tmp_path):
    import app as app_module
    from annotation.accounts import authenticate
    from db.engine import session_scope
    from db.models import Rater

    shown = []
    blocks, ctx, _ = app_module.create_app(None, tmp_path, demo=False, log=shown.append)
    try:
        assert "it must be changed at the first sign-in" in shown[0]
        password = shown[0].split("one-time password: ")[1].split()[0]
        with session_scope(ctx.factory) as s:
            assert authenticate(s, "admin", password).must_change_password
            assert s.query(Rater).filter_by(name="admin").one().must_change_password
    finally:
        ctx.worker.stop()


def test_gradios_queue_polls_at_the_apps_interval(tmp_path):
    """Gradio's queue looks for work every 1 ms by default (waking the event loop a thousand times a second); the
    app sets its own interval (private attributes: this test catches a Gradio upgrade that renames them)."""
    import app as app_module

    blocks, ctx, _ = app_module.create_app(None, tmp_path, demo=False, log=lambda _msg: None)
    try:
        assert blocks._queue.sleep_when_free == app_module.QUEUE_POLL_S > 0.001
        assert blocks._queue.progress_update_sleep_when_free == app_module.PROGRESS_POLL_S
        # Gradio reads a handler's annotations on every call (to find its gr.Request): the rate view's are
        # evaluated objects, not strings that would be compiled again each time
        rate = {f.api_name: f.fn for f in blocks.fns.values() if f.api_name in ("submit", "skip", "next_task")}
        assert len(rate) == 3
        for fn in rate.values():
            assert fn.__annotations__ and not any(isinstance(v, str) for v in fn.__annotations__.values())
    finally:
        ctx.worker.stop()


def test_accounts_command_line(tmp_path, capsys):
    from annotation.audit import history
    from db.engine import make_engine, make_session_factory, session_scope

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert _cli("add", "--name", "ana", "--role", "analyst", url=url) == 0
    assert "one-time password" in capsys.readouterr().out
    assert _cli("add", "--name", "ana", url=url) == 2  # a duplicate: one error line
    assert "already exists" in capsys.readouterr().err
    assert _cli("deactivate", "--name", "nobody", url=url) == 2
    assert _cli("deactivate", url=url) == 2  # --name is required
    capsys.readouterr()
    assert _cli("list", url=url) == 0
    out = capsys.readouterr().out
    assert "ana" in out and "analyst" in out and "never" in out
    assert _cli("deactivate", "--name", "ana", url=url) == 0
    assert _cli("list", url=url) == 0
    assert " no " in capsys.readouterr().out
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            assert [e.action for e in history(s, entity="rater")] == ["rater.created", "rater.deactivated"]
    finally:
        engine.dispose()
