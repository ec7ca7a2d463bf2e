"""The app in a real browser: Debian's Chromium driven by Playwright against ``python app.py`` on a temporary
database and data directory (first start: admin, demo project with the shipped mnist-x8 and its banks).

At 1400x900 a rater signs in and everything they need fits without scrolling; they pick by clicking (ranks
drawn, "3 of 3", a fourth pick refused with a message), submit, and the vote is in the database; then by keys
only: focus is back on the grid, keys reach sample 16, a reload returns to the same task with its picks, Escape
leaves the reading box, 1 2 3 Ctrl+Enter pressed at once store one vote with those picks, and S skips only after
a second key. The analyst computes the ensemble and sees it with its LR-PSNR; the admin sees the bank progress.
Every request the page makes is recorded: none may leave 127.0.0.1. Screenshots of each view go to
``$TEST_ARTIFACTS`` (default ``tests/artifacts/``). Marked ``browser``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from conftest import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing (pip install playwright)")


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    from sr_engine import list_models

    if "mnist-x8" not in list_models():
        pytest.skip("the shipped model mnist-x8 (the demo's) is not in data/checkpoints/")
    data = tmp_path_factory.mktemp("app-browser")
    port = free_port()
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


def _assignments(data: Path) -> dict[int, dict]:
    """assignment id -> rater, status, picked sample ids best first, reading, skip reason (read from the store)."""
    from db.engine import make_engine, make_session_factory, session_scope
    from db.models import Assignment, AssignmentStatus, Pick, Rater, Reading

    engine = make_engine(f"sqlite:///{data / 'annotation.sqlite'}")
    try:
        with session_scope(make_session_factory(engine)) as s:
            out = {}
            for a, name in s.execute(select(Assignment, Rater.name).join(Rater, Rater.id == Assignment.rater_id)):
                picks = [p.sample_id for p in s.scalars(select(Pick).where(Pick.assignment_id == a.id)
                                                        .order_by(Pick.rank))]
                reading = s.scalar(select(Reading.text).where(Reading.assignment_id == a.id))
                out[a.id] = {"rater": name, "status": AssignmentStatus(a.status).value, "picks": picks,
                             "reading": reading, "reason": a.skip_reason}
            return out
    finally:
        engine.dispose()


def _votes(data: Path) -> list[tuple[str, int, int]]:
    return [(a["rater"], aid, len(a["picks"])) for aid, a in sorted(_assignments(data).items()) if a["picks"]]


def _assignment_on_screen(page) -> int:
    return int(page.locator("#sr-grid .sr-grid").get_attribute("data-assignment"))


def _wait_for_new_task(page, old: int) -> int:
    page.wait_for_function("(a) => { const g = document.querySelector('#sr-grid .sr-grid');"
                           " return g && g.dataset.assignment !== String(a); }", arg=old, timeout=30_000)
    return _assignment_on_screen(page)


def _sids(page, positions) -> list[int]:
    tiles = page.locator("#sr-grid .sr-tile")
    return [int(tiles.nth(i).get_attribute("data-sid")) for i in positions]


def _focus_in_grid(page) -> bool:
    return page.evaluate("() => !!(document.activeElement && document.activeElement.closest('#sr-grid'))")


def _fits(page, selector: str, width: int, height: int) -> list[str]:
    """The elements matching ``selector`` that do not lie wholly inside the viewport (none: all fit)."""
    bad = []
    loc = page.locator(selector)
    assert loc.count() >= 1, selector
    for i in range(loc.count()):
        box = loc.nth(i).bounding_box()
        if box is None or box["x"] < 0 or box["y"] < 0 or box["x"] + box["width"] > width \
                or box["y"] + box["height"] > height:
            bad.append(f"{selector}[{i}]: {box}")
    return bad


def test_rate_then_analyse_in_chromium(app_server):
    """One app start for every point: layout at 1400x900, clicks, keys for every sample, a pick beyond k, focus
    after submit, Escape out of the reading box, a reload mid-task, fast keys then Ctrl+Enter, skip with a second
    key; then the analyst and the admin."""
    from ui.rate import SKIP_REASONS, TILE_KEYS

    base, data, creds = app_server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    width, height = 1400, 900
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("request", lambda r: requests.append(r.url))
            rater = creds["rater"][0]

            # ---- layout: the LR image, 16 samples, the legend and the controls fit at 1400x900 ----
            _login(page, base, *creds["rater"])
            page.wait_for_selector("#sr-grid .sr-tile", timeout=60_000)
            tiles = page.locator("#sr-grid .sr-tile")
            assert tiles.count() == 16
            page.screenshot(path=str(ARTIFACTS / "rate-1400x900.png"))
            page.wait_for_selector("#sr-guidelines details[open]:has-text('handwritten digit')")
            bad = [b for sel in ("#sr-lr img", "#sr-grid .sr-tile", "#sr-legend", "#sr-submit", "#sr-skip-open",
                                 "#sr-reading", "#sr-counter", "#sr-rate-project", "#sr-guidelines")
                   for b in _fits(page, sel, width, height)]
            assert not bad, bad
            assert "remaining" in page.locator("#sr-rate-project").inner_text() or \
                "left" in page.locator("#sr-rate-project input").input_value()
            assert [tiles.nth(i).locator(".sr-num").inner_text() for i in (0, 8, 9, 15)] == ["1", "9", "a", "g"]

            # ---- clicks: ranks drawn, a pick beyond k says so, Submit checks "exactly k" in the page ----
            first = _assignment_on_screen(page)
            page.keyboard.press("Control+Enter")
            page.wait_for_selector("#sr-keymsg:has-text('Pick exactly 3')")
            for i in (4, 0, 9):
                tiles.nth(i).click()
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")
            assert tiles.nth(4).get_attribute("data-rank") == "1"
            assert tiles.nth(9).get_attribute("data-rank") == "3"
            tiles.nth(1).click()  # a fourth pick: refused, and the page says so
            assert tiles.nth(1).get_attribute("data-rank") is None
            page.wait_for_selector("#sr-keymsg:has-text('unpick one first')")
            tiles.nth(0).click()  # unpick rank 2: rank 3 moves up
            page.wait_for_selector("#sr-counter:has-text('2 of 3 picked')")
            assert tiles.nth(9).get_attribute("data-rank") == "2"
            tiles.nth(0).click()
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")
            want = _sids(page, (4, 9, 0))
            page.locator("#sr-reading input, #sr-reading textarea").first.fill("5")
            page.screenshot(path=str(ARTIFACTS / "rate-picked.png"))
            page.locator("#sr-submit").click()
            page.wait_for_selector("#sr-message:has-text('Saved.')", timeout=30_000)
            second = _wait_for_new_task(page, first)
            stored = _assignments(data)
            assert stored[first]["picks"] == want and stored[first]["reading"] == "5"

            # ---- focus returns to the grid; keys reach sample 16; a reload keeps the task and its picks ----
            page.wait_for_function("() => document.activeElement && document.activeElement.closest('#sr-grid')")
            for key in ("1", "2", TILE_KEYS[15]):
                page.keyboard.press(key)
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")
            assert tiles.nth(15).get_attribute("data-rank") == "3"
            want = _sids(page, (0, 1, 15))
            page.reload()
            page.wait_for_selector("#sr-grid .sr-tile", timeout=60_000)
            assert _assignment_on_screen(page) == second  # the same task: the lease holds
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")
            assert _sids(page, (0, 1, 15)) == want and tiles.nth(15).get_attribute("data-rank") == "3"
            page.screenshot(path=str(ARTIFACTS / "rate-after-reload.png"))

            # ---- R types the reading, Escape leaves the box, Ctrl+Enter submits ----
            page.keyboard.press("r")
            page.keyboard.type("8")
            page.keyboard.press("Escape")
            assert _focus_in_grid(page)
            page.keyboard.press("Control+Enter")
            third = _wait_for_new_task(page, second)
            stored = _assignments(data)
            assert stored[second]["picks"] == want and stored[second]["reading"] == "8"
            page.wait_for_function("() => document.activeElement && document.activeElement.closest('#sr-grid')")

            # ---- fast keys: 1, 2, 3 then Ctrl+Enter with no waiting stores one vote with those picks ----
            want = _sids(page, (0, 1, 2))
            for key in ("1", "2", "3", "Control+Enter"):
                page.keyboard.press(key)
            fourth = _wait_for_new_task(page, third)
            stored = _assignments(data)
            assert stored[third]["picks"] == want and stored[third]["status"] == "submitted"
            assert [aid for aid, a in stored.items() if a["rater"] == rater and a["picks"]] == [first, second, third]

            # ---- S opens the reasons; only a second key skips ----
            page.keyboard.press("s")
            page.wait_for_selector("#sr-skip-panel .sr-skip-box:visible")
            page.screenshot(path=str(ARTIFACTS / "rate-skip-reasons.png"))
            assert _assignments(data)[fourth]["status"] == "served"
            assert not _fits(page, "#sr-skip-panel .sr-skip-box", width, height)
            page.keyboard.press("2")
            _wait_for_new_task(page, fourth)
            skipped = _assignments(data)[fourth]
            assert skipped["status"] == "skipped" and skipped["reason"] == SKIP_REASONS[1]

            # ---- my work: the rater's own submissions, revisable inside the window ----
            page.locator("#sr-my-work").get_by_text("My work").click()
            page.wait_for_selector(f"#sr-my-work .sr-my-work:has-text('task {first}')")
            assert f"task {third}" in page.locator("#sr-my-work").inner_text()
            page.screenshot(path=str(ARTIFACTS / "rate-my-work.png"), full_page=True)
            # a row's Revise button puts that submission back on screen with its picks
            page.locator(f"#sr-my-work .sr-revise-one[data-aid='{second}']").click()
            page.wait_for_selector(f"#sr-message:has-text('Revising task {second}')", timeout=30_000)
            assert _assignment_on_screen(page) == second
            page.wait_for_selector("#sr-counter:has-text('3 of 3 picked')")

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


def _chromium(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def _choose_file(page, elem: str, path: Path, tries: int = 3) -> None:
    """Choose ``path`` in the file component ``elem`` and wait until it lists the file. A choice whose upload request
    never left the page is made again (as a user would pick the file again); the browser's console and the upload
    responses are in the error if it never shows."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}"))
    page.on("response", lambda r: seen.append(f"{r.status} {r.url}") if "/upload" in r.url else None)
    shows = f"() => document.querySelector({elem!r}).innerText.includes({path.name!r})"
    for _ in range(tries):
        page.locator(f"{elem} input[type='file']").set_input_files(str(path))
        try:
            page.wait_for_function(shows, timeout=30_000)
            return
        except sync_api.TimeoutError:
            continue
    raise AssertionError(f"{path.name} never appeared in {elem} after {tries} choices: {seen[-20:]}")


def test_a_plates_bank_of_16_fits_at_1400x900(tmp_path):
    """Plates: the LR image, all 16 wide samples (numbered), the legend and the controls fit at 1400x900, and the
    LR image is at least as wide as a sample."""
    from annotation.banks import run_bank_jobs
    from annotation.images import import_arrays
    from annotation.projects import create_project, load_model, settings_for_engine
    from conftest import serve_app
    from db.engine import session_scope
    from sr_engine import list_models
    from sr_engine.degradation import make_lr
    from sr_engine.plates import render_plates

    if "plates-x4" not in list_models():
        pytest.skip("the shipped model plates-x4 is not in data/checkpoints/")
    engine = load_model("plates-x4")
    lr = [make_lr(hr, engine.scale) for hr in render_plates(2, seed=7).images]  # training-split renders, 8x32
    width, height = 1400, 900
    with serve_app(tmp_path, "admin-pw", {"rita": ("rater", "rita-pw-1")}, n_images=1) as (base, ctx, _):
        with session_scope(ctx.factory) as s:  # the only project with banks for this engine: the rater's first
            pid = create_project(s, settings_for_engine(engine, "plates", bank_size=16, k_picks=3,
                                                        raters_per_image=3, ensemble_size=2, steps=2)).id
            import_arrays(s, pid, lr, ["plate-0.png", "plate-1.png"])
        assert not run_bank_jobs(ctx.factory, engine, pid).failed
        with sync_api.sync_playwright() as p:
            browser = _chromium(p)
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                _login(page, base.rstrip("/"), "rita", "rita-pw-1")
                page.locator("#sr-rate-project input").first.click()
                page.get_by_role("option", name=re.compile(r"^plates")).first.click()
                page.wait_for_selector("#sr-grid .sr-grid.sr-wide .sr-tile", timeout=60_000)
                tiles = page.locator("#sr-grid .sr-tile")
                assert tiles.count() == 16
                page.screenshot(path=str(ARTIFACTS / "rate-plates-1400x900.png"))
                bad = [b for sel in ("#sr-lr img", "#sr-grid .sr-tile", "#sr-legend", "#sr-submit", "#sr-skip-open",
                                     "#sr-reading", "#sr-rate-project")
                       for b in _fits(page, sel, width, height)]
                assert not bad, bad
                lr_w = page.locator("#sr-lr img").bounding_box()["width"]
                tile_w = [tiles.nth(i).locator("img").bounding_box()["width"] for i in range(16)]
                assert lr_w >= max(tile_w), (lr_w, tile_w)
                assert [tiles.nth(i).locator(".sr-num").inner_text() for i in (0, 8, 9, 15)] == ["1", "9", "a", "g"]
            finally:
                browser.close()


def test_admin_messages_appear_beside_the_button_that_caused_them(tmp_path):
    """A refused upload (a wrong-size image), a refused project (no name) and a created one: each message is in the
    status element of its own action (the button's ``sr-action`` container, just below the button), escaped, not a
    toast; the next action empties the earlier message."""
    import numpy as np
    from PIL import Image

    from conftest import serve_app, tiny_flow_engine

    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(wide)
    with serve_app(tmp_path / "data", "admin-pw", {}, engine=tiny_flow_engine(lr_shape=(4, 4)), project="ui") \
            as (base, ctx, pid):
        with sync_api.sync_playwright() as p:
            browser = _chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                _login(page, base.rstrip("/"), "admin", "admin-pw")
                page.get_by_role("tab", name="Admin").click()
                page.wait_for_selector("#sr-bank-progress:has-text('banks complete')", timeout=30_000)

                # ---- a refused upload: the message sits under "Import images", in its container ----
                _choose_file(page, "#sr-admin-files", wide)
                page.locator("#sr-upload-btn").click()
                msg = page.locator("#sr-upload-msg .sr-msg.sr-error")
                msg.wait_for(timeout=30_000)
                assert "wide.png: 6x4 pixels, but model tiny-x4 takes LR images of 4x4" in msg.inner_text()
                page.locator("#sr-upload-btn").scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "admin-refusal-beside-button.png"))
                assert page.evaluate("() => document.querySelector('#sr-upload-msg').closest('.sr-action')"
                                     " === document.querySelector('#sr-upload-btn').closest('.sr-action')")
                button, box = page.locator("#sr-upload-btn").bounding_box(), msg.bounding_box()
                group = page.locator("#sr-upload-btn").locator("xpath=ancestor::*[contains(@class,'sr-action')][1]")
                outer = group.bounding_box()
                below = box["y"] - (button["y"] + button["height"])
                assert -1 <= below < 40, (button, box)  # directly below the button
                assert outer["x"] - 1 <= box["x"] and box["x"] + box["width"] <= outer["x"] + outer["width"] + 1
                assert page.get_by_text("6x4 pixels").count() == 1  # only beside the button: no toast

                # ---- a refused project (no name): beside "Create project"; the upload's message is gone ----
                page.locator("#sr-create-btn").click()
                create = page.locator("#sr-create-msg .sr-msg.sr-error")
                create.wait_for(timeout=60_000)
                assert "project name" in create.inner_text()
                assert page.locator("#sr-upload-msg .sr-msg").count() == 0
                assert page.evaluate("() => document.querySelector('#sr-create-msg').closest('.sr-action')"
                                     " === document.querySelector('#sr-create-btn').closest('.sr-action')")
                page.screenshot(path=str(ARTIFACTS / "admin-create-refused.png"))

                # ---- a name with markup: created, and the message shows it as text ----
                page.locator("#sr-new-name input, #sr-new-name textarea").first.fill("<b>bold</b>")
                page.locator("#sr-create-btn").click()
                page.wait_for_selector("#sr-create-msg .sr-msg:has-text('bold')", timeout=60_000)
                said = page.locator("#sr-create-msg").inner_text()
                assert "Created project '<b>bold</b>'" in said, said
                assert page.locator("#sr-create-msg b").count() == 0
            finally:
                browser.close()
