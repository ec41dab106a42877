"""An honest report of a real night with luck planted in it: trial 4 is lucky on its
selection seed (+1.0 there, +0.01 on new seeds), so it passes the screen and fails
its confirmation (a false keep avoided); trial 7 is a real +0.2, kept on its confirmation
runs; trial 10 adds a hair of the same luck to the best (+0.02 on its selection seed), a
single run above the final pick's confirmed mean that must still rank below it.

The tiny lab's noise is deterministic: score = 1 + boost + 0.01·((seed·7) % 3 − 1), so the
selection seed 0 scores −0.01 and the confirmation seeds 1000, 1001 score 0 and +0.01."""

from __future__ import annotations

import json

import jsonschema
import pytest
from report_nights import LUCKY_DECISIONS, lucky_lab, section

from nightlab.config import load_config
from nightlab.report import write_report
from nightlab.report.leaderboard import schema

from conftest import rows


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict:
    lab = lucky_lab(tmp_path_factory.mktemp("honest"))
    out = write_report(lab, load_config(lab), top_k=5)
    board = json.loads((out / "final_leaderboard_top5.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(board)
    paper = (out / "final_paper_report.md").read_text()
    return {"lab": lab, "out": out, "board": board, "paper": paper,
            "by_trial": {c["trial"]: c for c in board["candidates"]}}  # fmt: skip


def test_the_night_is_what_the_test_plants(night):
    assert len(LUCKY_DECISIONS) == 3
    got = rows(night["lab"], "SELECT id, kind, verdict, objective, confirms FROM trials")
    assert [tuple(r) for r in got] == [
        (1, "baseline", "baseline", 0.99, None),
        (2, "baseline", "baseline", 1.0, None),
        (3, "baseline", "baseline", 1.01, None),
        (4, "trial", "not_confirmed", 1.99, None),  # lucky on seed 0 only
        (5, "confirm", "confirmation", 1.01, 4),
        (6, "confirm", "confirmation", 1.02, 4),
        (7, "trial", "kept", 1.19, None),  # boost 0.2
        (8, "confirm", "confirmation", 1.2, 7),
        (9, "confirm", "confirmation", 1.21, 7),
        (10, "trial", "discarded", 1.21, None),  # boost 0.2 and a hair of luck
    ]


def test_a_lucky_single_run_ranks_below_the_confirmed_pick(night):
    board, by_trial = night["board"], night["by_trial"]
    assert [c["trial"] for c in board["candidates"]] == [7, 4, 1, 10]
    pick, single = by_trial[7], by_trial[10]
    assert board["final_pick"] == 7 and pick["final_pick"]
    assert pick["confirmed"] and pick["n"] == 2 and pick["selection"] == 1.19
    assert pick["objective_mean"] == pick["confirmed_mean"] == pytest.approx(1.205)
    # a higher figure, but one run that was picked for being high: ranked last
    assert single["objective_mean"] > pick["objective_mean"] and single["rank"] == 4
    assert not single["confirmed"] and single["n"] == 0 and single["confirmed_mean"] is None
    assert single["selection"] == 1.21 and single["objectives"] == []
    # the lucky trial's figure is its confirmation runs' mean: its 1.99 is left out
    lucky = by_trial[4]
    assert lucky["verdict"] == "not_confirmed" and lucky["selection"] == 1.99
    assert lucky["confirmed_mean"] == pytest.approx(1.015) and lucky["n"] == 2
    assert lucky["judgement"]["stage"] == "confirm" and lucky["judgement"]["runs"] == [5, 6]
    md = (night["out"] / "final_leaderboard_top5.md").read_text()
    assert "| 1 ★ | 7, 8, 9 | 1.205 ± 0.007071 | 2 | 1.19 | kept |" in md
    assert "| 2 | 4, 5, 6 | 1.015 ± 0.007071 | 2 | 1.99 | not_confirmed |" in md
    assert "| 4 | 10 | 1.21 (single run) | — | 1.21 | discarded |" in md
    results = section(night["paper"], "Results")
    singles = results.split("**Unconfirmed single runs**", 1)[1].split("\n\n", 2)[1]
    assert "| 4 | 10 | 1.21 | discarded |" in singles and "| 7 " not in singles


def test_the_report_shows_not_confirmed_and_the_false_keeps_avoided(night):
    paper, board = night["paper"], night["board"]
    summary = section(paper, "Summary")
    assert "2 trial(s) passed the screen: 1 kept, 1 not confirmed on new seeds" in summary
    assert "(**false keeps avoided: 1**); 1 discarded at the screen" in summary
    results = section(paper, "Results")
    assert "**False keeps avoided: 1** — challengers that passed the screen" in results
    assert ": trial(s) 4." in results
    # the verdicts table: the lucky trial's screen passed on 1.99, its confirmation failed
    ((raw,),) = rows(night["lab"], "SELECT judgement FROM trials WHERE id = 4")
    j = json.loads(raw)
    z = j["improvement"] / (j["sigma"] * (1 / 2 + 1 / 3) ** 0.5)  # far below the z 2 it needs
    (row,) = [line for line in results.splitlines() if line.startswith("| 4 | lucky 0→1 |")]
    assert f"| 1.99 | +0.99 / 0.0244 | 1.015 (n=2) | +0.015, z {z:.3g} / 0.0288 |" in row
    assert row.endswith("| not_confirmed |")
    challenges = section(paper, "Challenges")
    assert "**1 trial(s) passed the screen but not the confirmation**" in challenges
    assert "4 (selection run 1.99; confirmed 1.015, n=2: +0.015 vs threshold 0.0288)" in challenges
    ratchet = board["ratchet"]
    assert (ratchet["passed_screen"], ratchet["kept"], ratchet["not_confirmed"]) == (2, 1, 1)
    assert ratchet["false_keeps_avoided"] == 1 and ratchet["screened"] == 0
    story = (night["out"] / "final_condensed_story.md").read_text()
    assert ", 1 kept, 1 not confirmed (false keeps avoided);" in story
    assert "trial 4 not_confirmed" in story  # the verdict of its confirmation runs


def test_the_summary_says_what_improved_by_how_much_and_how_sure(night):
    summary = section(night["paper"], "Summary")
    ((raw,),) = rows(night["lab"], "SELECT judgement FROM trials WHERE id = 7")
    j = json.loads(raw)
    assert j["z"] > 2  # the second challenger of the baseline: Bonferroni asks for more
    z = j["improvement"] / (j["sigma"] * (1 / 2 + 1 / 3) ** 0.5)
    assert (
        "**Key Finding**: trial 7 (boost 0→0.2; optimization) raised score from 1 ± 0.01 "
        "(baseline, n=3) to 1.205 ± 0.007071 (confirmed, n=2; selection run 1.19): +0.205 in 1 "
        "kept step(s). Its confirmation runs beat the best of that moment (the baseline: 1, "
        f"n=3) by +0.205 against a threshold of {j['threshold']:.3g}: z = {z:.3g} where the "
        f"rule asks z > {j['z']:.3g} (σ {j['sigma']:.3g}, df 4; z corrected for the earlier "
        "challengers of the same best)."
    ) in summary


def test_the_confirmation_cost_is_the_ratchets_runs_against_the_nights_time(night):
    walls = dict(rows(night["lab"], "SELECT id, wall_s FROM trials"))
    ratchet = night["board"]["ratchet"]
    assert ratchet["confirmation_ratchet_runs"] == 4
    assert ratchet["confirmation_ratchet_s"] == pytest.approx(sum(walls[i] for i in (5, 6, 8, 9)))
    assert ratchet["confirmation_total_s"] == pytest.approx(sum(walls.values()))
    share = ratchet["confirmation_ratchet_s"] / ratchet["confirmation_total_s"]
    assert ratchet["confirmation_share"] == pytest.approx(share)
    assert ratchet["confirmation_finishup_runs"] == 0 and ratchet["confirmation_finishup_s"] == 0
    summary = section(night["paper"], "Summary")
    assert f"in 4 ratchet confirmation run(s), {100 * share:.3g}% of the night's" in summary


def test_sigma_over_the_night_is_each_verdicts_sigma(night):
    got = rows(night["lab"], "SELECT id, judgement FROM trials WHERE judgement IS NOT NULL")
    judged = {i: json.loads(j) for i, j in got}
    expected = [  # (made at, σ): screens at their trial, confirmations at their last run
        (4, judged[4]["screen"]["sigma"]),
        (6, judged[4]["sigma"]),
        (7, judged[7]["screen"]["sigma"]),
        (9, judged[7]["sigma"]),
        (10, judged[10]["sigma"]),
    ]
    from nightlab.report.data import load

    lab = night["lab"]
    points = load(lab, load_config(lab)).sigma_over_night()
    assert [(p["at"], p["sigma"]) for p in points] == expected
    assert [p["df"] for p in points] == [2, 3, 3, 4, 4]
    results = section(night["paper"], "Results")
    assert f"σ over the night: 5 verdicts, from σ {expected[0][1]:.3g} (df 2" in results
    assert (night["out"] / "sigma_over_night.png").stat().st_size > 1000
    assert night["board"]["noise"]["df"] == 4
