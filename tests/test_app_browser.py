"""The app in a real browser: Debian's Chromium driven by Playwright against ``python app.py`` on a temporary
database and data directory (first start: admin, demo project with the shipped mnist-x4 and its banks).

A rater signs in, picks k samples by clicking (ranks drawn, "3 of 3", Submit enabled only then), submits, and
the vote is in the database; a second task is done with the keyboard only. The analyst signs in, computes the
ensemble and sees it with its LR-PSNR; the admin sees the bank progress. Every request the page makes is recorded:
none may leave 127.0.0.1. Screenshots of each view go to ``$TEST_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    from sr_engine import list_models

    if "mnist-x4" not in list_models():
        pytest.skip("the shipped model mnist-x4 is not in data/checkpoints/")
    data = tmp_path_factory.mktemp("app-browser")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env.pop("SR_DB_URL", None)
    log = open(data / "app.log", "w+")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--data-dir", str(data),
                             "--admin-password", "admin-pw"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # a ceiling: a busy 2-core machine can take minutes to import torch
        text = ""
        while time.monotonic() < deadline:
            text = (data / "app.log").read_text()
            if "Running on local URL" in text:
                break
            if proc.poll() is not None:
                pytest.fail(f"app.py exited early:\n{text}")
            time.sleep(0.5)
        else:
            pytest.fail(f"app.py did not start in time:\n{text}")
        creds = {role: (name, pw) for role, name, pw in re.findall(r"demo (rater|analyst):\s+(\S+) / (\S+)", text)}
        assert "rater" in creds and "analyst" in creds, text
        yield f"http://127.0.0.1:{port}", data, creds
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _login(page, base: str, name: str, password: str) -> None:
    page.goto(base + "/logout")
    page.goto(base + "/")
    page.locator("input[data-testid='textbox']").first.fill(name)
    page.locator("input[type='password']").first.fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("text=Signed in as", timeout=60_000)


def _votes(data: Path) -> list[tuple[str, int, int]]:
    from db.engine import make_engine, make_session_factory, session_scope
    from db.models import Assignment, Pick, Rater

    engine = make_engine(f"sqlite:///{data / 'annotation.sqlite'}")
    try:
        with session_scope(make_session_factory(engine)) as s:
            return [tuple(r) for r in s.execute(
                select(Rater.name, Assignment.id, func.count(Pick.id)).join(Assignment, Assignment.rater_id == Rater.id)
                .join(Pick, Pick.assignment_id == Assignment.id).group_by(Rater.name, Assignment.id)).all()]
    finally:
        engine.dispose()


def test_rate_then_analyse_in_chromium(app_server):
    base, data, creds = app_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))

            # ---- the rater: pick 3 by clicking, submit ----
            _login(page, base, *creds["rater"])
            page.wait_for_selector("#sr-grid .sr-tile", timeout=60_000)
            tiles = page.locator("#sr-grid .sr-tile")
            assert tiles.count() == 16
            submit = page.locator("#sr-submit")
            assert submit.is_disabled()
            page.screenshot(path=str(ARTIFACTS / "rate-view.png"), full_page=True)
            for i in (4, 0, 9):
                tiles.nth(i).click()
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")
            assert tiles.nth(4).get_attribute("data-rank") == "1"
            assert tiles.nth(9).get_attribute("data-rank") == "3"
            tiles.nth(1).click()  # a fourth pick is ignored: k = 3
            assert tiles.nth(1).get_attribute("data-rank") is None
            tiles.nth(0).click()  # unpick rank 2: rank 3 moves up
            page.wait_for_selector("#sr-counter:has-text('2 of 3 picked')")
            assert submit.is_disabled() and tiles.nth(9).get_attribute("data-rank") == "2"
            tiles.nth(0).click()
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")
            page.wait_for_function("() => !document.querySelector('#sr-submit').disabled")
            page.locator("#sr-reading input, #sr-reading textarea").first.fill("5")
            page.screenshot(path=str(ARTIFACTS / "rate-view-picked.png"), full_page=True)
            submit.click()
            page.wait_for_selector("#sr-message:has-text('Saved.')", timeout=30_000)
            votes = _votes(data)
            assert [(n, k) for n, _, k in votes] == [(creds["rater"][0], 3)]

            # ---- the next task with the keyboard only: 1, 2, 3, R, type, Ctrl+Enter ----
            page.wait_for_selector("#sr-counter:has-text('0 of 3 picked')")
            page.locator("body").click(position={"x": 5, "y": 5})
            for key in ("1", "2", "3"):
                page.keyboard.press(key)
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")
            page.wait_for_function("() => !document.querySelector('#sr-submit').disabled")
            page.keyboard.press("r")
            page.keyboard.type("8")
            page.keyboard.press("Control+Enter")
            page.wait_for_function("() => (document.querySelector('#sr-message') || {}).innerText"
                                   " && document.querySelector('#sr-message').innerText.includes('Saved.')"
                                   " && document.querySelector('#sr-progress').innerText.includes('2 of')",
                                   timeout=30_000)
            assert len(_votes(data)) == 2

            # ---- the analyst: overview, heat-map, ensemble ----
            _login(page, base, *creds["analyst"])
            page.wait_for_selector("#sr-overview:has-text('banks')", timeout=60_000)
            page.wait_for_selector("#sr-heatmap .sr-heat-tile", timeout=30_000)
            page.get_by_role("button", name="Compute ensemble from the current votes").click()
            page.wait_for_selector("#sr-ensemble:has-text('LR-PSNR')", timeout=60_000)
            assert "consistent" in page.locator("#sr-ensemble").inner_text()
            assert page.locator("#sr-readings .sr-bar-row").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "analyst-view.png"), full_page=True)
            assert page.get_by_role("tab", name="Admin").count() == 0  # not an admin

            # ---- the admin: bank progress ----
            _login(page, base, "admin", "admin-pw")
            page.get_by_role("tab", name="Admin").click()
            page.wait_for_selector("#sr-bank-progress:has-text('banks complete')", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "admin-view.png"), full_page=True)
        finally:
            browser.close()
    off_machine = [u for u in requests if not u.startswith((base, "data:", "blob:"))]
    assert not off_machine, f"requests left 127.0.0.1: {off_machine[:10]}"
