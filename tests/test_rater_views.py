"""What a rater's page is built from, without a browser: the project menu with what is left and the live task (a
reload returns to it), "my work" with revisability, project guidelines (admins only, audited), the analyst's
heat-map (borders and count badges by bank index, no tint), the picker's key labels."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from annotation.accounts import create_rater
from annotation.errors import InvalidInput, PermissionDenied
from annotation.projects import get_project, set_guidelines
from annotation.tasks import next_task, submit
from annotation.views import my_work, rater_projects
from conftest import make_store, seeded_project, tiny_flow_engine
from db.engine import session_scope
from db.models import AuditLog, utcnow
from ui.rate import TILE_KEYS, guidelines_html
from ui.render import heatmap_html, picker_html


@pytest.fixture(scope="module")
def store():
    engine = tiny_flow_engine()
    eng, factory = make_store("sqlite://")
    first = seeded_project(factory, engine, n_images=2, name="first", raters_per_image=2, revision_window_s=60)
    second = seeded_project(factory, engine, n_images=3, name="second", raters_per_image=2)
    with session_scope(factory) as s:
        rater = create_rater(s, "rae").id
        admin = create_rater(s, "boss", "admin").id
    yield factory, first, second, rater, admin
    eng.dispose()


def test_menu_counts_live_task_and_my_work(store):
    factory, first, second, rater, _ = store
    with session_scope(factory) as s:
        rows = {r.name: r for r in rater_projects(s, rater)}
        assert (rows["first"].remaining, rows["second"].remaining) == (2, 3)
        assert rows["first"].live_assignment_id is None
        t = next_task(s, rater, second)
    with session_scope(factory) as s:  # a reload: the menu knows where the rater's live task is
        rows = {r.name: r for r in rater_projects(s, rater)}
        assert rows["second"].live_assignment_id == t.assignment_id and rows["second"].remaining == 3
        assert next_task(s, rater, second).assignment_id == t.assignment_id  # the lease holds
        submit(s, rater, t.assignment_id, [x.sample_id for x in t.samples[:2]], "7")
    with session_scope(factory) as s:
        rows = {r.name: r for r in rater_projects(s, rater)}
        assert rows["second"].remaining == 2 and rows["second"].done == 1
        assert rows["second"].live_assignment_id is None
        (w,) = my_work(s, rater, second)
        assert (w.assignment_id, w.n_picks, w.reading, w.revisable) == (t.assignment_id, 2, "7", True)
        t1 = next_task(s, rater, first)
        submit(s, rater, t1.assignment_id, [x.sample_id for x in t1.samples[:2]])
    with session_scope(factory) as s:  # the first project's 60 s window closes
        (w,) = my_work(s, rater, first, now=utcnow() + timedelta(seconds=61))
        assert not w.revisable and w.reading is None
        assert my_work(s, rater, first)[0].revisable


def test_guidelines_admins_only_audited_and_escaped(store):
    factory, first, _, rater, admin = store
    text = "Read <b>carefully</b>.\nTwo lines."
    with session_scope(factory) as s:
        with pytest.raises(PermissionDenied):
            set_guidelines(s, rater, first, "raters may not")
        set_guidelines(s, admin, first, text)
    with session_scope(factory) as s:
        assert get_project(s, first).guidelines == text
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "project.guidelines")).one()
        assert entry.details["new"] == text and entry.details["old"] == ""
        with pytest.raises(InvalidInput):
            set_guidelines(s, admin, first, "x" * 10_001)
    html = guidelines_html(text)
    assert "<details" in html and " open>" in html and "&lt;b&gt;carefully&lt;/b&gt;.<br>Two lines." in html
    assert guidelines_html("") == ""


def test_heatmap_marks_votes_by_border_and_badge_not_tint():
    from conftest import tiny_lr_images
    from annotation.images import encode_png

    png = encode_png(tiny_lr_images(1, seed=0)[0])
    html = heatmap_html([(i, png, 100.0) for i in range(4)], [3, 0, 1, 0], top=(0,))
    assert "sr-heat'" not in html and "opacity" not in html  # no tint over the pixels
    assert html.count("class='sr-count'") == 2 and ">3</span>" in html  # badges on the voted samples only
    assert "bank index" in html and "#3" in html
    grid = picker_html([(10 + i, png) for i in range(12)], 3, 1, keys=TILE_KEYS)
    labels = [part.split("</span>")[0] for part in grid.split("<span class='sr-num'>")[1:]]
    assert labels == list("123456789abc") and "r" not in TILE_KEYS and "s" not in TILE_KEYS
