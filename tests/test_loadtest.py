"""The load script end to end with a few clients: the app started as its own process, each client a browser tab
over HTTP (sign-in, the first task through the queue, submissions as one plain POST each, then the page's chained
side-panel event), and every vote stored once. Timing figures are printed by the script, never asserted here."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_a_few_http_raters_store_every_vote_once():
    from ui.loadtest import main

    (res,) = main(["--raters", "3", "--tasks", "2", "--images", "4", "--n", "4"])
    assert res["errors"] == []
    assert res["submits"] == 6
    assert res["saved"] == res["stored"] == 6
    assert res["lost"] == 0 and res["doubled"] == 0


@pytest.mark.slow
def test_the_submission_cost_script_runs_through_the_services():
    from ui.submit_cost import main

    out = main(["--raters", "3", "--tasks", "2", "--images", "4", "--n", "4"])
    assert set(out) == {"submit + next task", "progress + my work", "total"}
    assert all(v > 0 for v in out.values())
