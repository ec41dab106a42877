"""Report edge cases on hand-built stores (real schema, rows as given): confirmation runs
over seeds, minimize, nothing kept, a test figure from an event, a long night, no data."""

from __future__ import annotations

import json
import statistics

import jsonschema
import pytest
from report_nights import (
    SECTIONS,
    baseline,
    config,
    confirmed,
    hand_store,
    is_png,
    judgement,
    section,
    trial,
)

from nightlab.report import write_report
from nightlab.report.candidates import parse_patch
from nightlab.report.leaderboard import schema

from conftest import git

CONFIRMED = {"lr": 0.01, "depth": 4}


def board_of(out, k: int = 5) -> dict:
    board = json.loads((out / f"final_leaderboard_top{k}.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(board)
    return board


def confirmation_night(tmp_path, extra: list | None = None, **kw):
    """Baseline over 3 seeds; trial 4 passed the screen on its selection run (1.5) and was
    kept on its confirmation runs 5-6 (seeds 1000, 1001); trial 7 scored a hair higher once,
    inside the noise (a single run, discarded at the screen)."""
    trials = [
        *baseline([1.0, 1.01, 0.99]),
        *confirmed(4, 1.5, [1.52, 1.48], 1.0, commit="c4", params=CONFIRMED,
                   dimension="optimization", hypothesis="a larger lr and depth"),
        trial(7, 1.505, commit="c7", params={"lr": 0.011, "depth": 4},
              judgement=judgement("discarded", 1.505, 1.5, best_trial=4, best_n=2)),
        *(extra or []),
    ]  # fmt: skip
    return hand_store(tmp_path / "lab", trials, **kw)


def test_confirmation_runs_form_one_candidate_with_mean_and_sd(tmp_path):
    lab = confirmation_night(tmp_path)
    out = write_report(lab, config())
    board = board_of(out)
    by_trial = {c["trial"]: c for c in board["candidates"]}
    kept = by_trial[4]
    assert kept["trials"] == [4, 5, 6] and kept["seeds"] == [0, 1000, 1001]
    assert kept["n_seeds"] == 3 and kept["n_runs"] == 3
    # the confirmed mean leaves out the selection run that proposed the candidate
    assert kept["n"] == 2 and kept["selection"] == 1.5 and kept["objectives"] == [1.52, 1.48]
    assert kept["confirmed"] and kept["confirmed_mean"] == pytest.approx(1.5)
    assert kept["objective_sd"] == pytest.approx(statistics.stdev([1.52, 1.48]))
    single = by_trial[7]
    assert not single["confirmed"] and single["n"] == 0 and single["objectives"] == []
    assert single["confirmed_mean"] is None and single["objective_sd"] is None
    assert single["objective_mean"] == single["selection"] == 1.505
    # confirmed candidates first: the lucky single run (1.505) ranks after the baseline (1.0)
    assert [c["trial"] for c in board["candidates"]] == [4, 1, 7]
    assert board["final_pick"] == 4 and by_trial[4]["final_pick"]
    summary = section((out / "final_paper_report.md").read_text(), "Summary")
    assert "1.5 ± 0.02828 (n=2)** (confirmed mean ± sd over 2 run(s) on new seeds; selection run "
    assert "has the best" not in summary  # the best confirmed mean is the pick
    assert is_png(out / "seed_spread.png")  # two candidates with several seeds
    md = (out / "final_leaderboard_top5.md").read_text()
    assert "| 1 ★ | 4, 5, 6 | 1.5 ± 0.02828 | 2 | 1.5 | kept |" in md
    assert "| 3 | 7 | 1.505 (single run) | — | 1.505 | discarded |" in md
    results = section((out / "final_paper_report.md").read_text(), "Results")
    assert "**Unconfirmed single runs** (best 1)" in results
    assert "| 3 | 7 | 1.505 | discarded |" in results


def test_minimize_ranks_the_lowest_first(tmp_path):
    mini = {"direction": "minimize"}
    trials = [
        *baseline([0.50, 0.51, 0.49]),
        *confirmed(4, 0.40, [0.41, 0.39], 0.5, commit="a", params={"lr": 0.01, "depth": 2},
                   **mini),
        trial(7, 0.45, commit="b", params={"lr": 0.02, "depth": 2}),
        *confirmed(8, 0.30, [0.31, 0.29], 0.4, commit="c", params={"lr": 0.01, "depth": 3},
                   best_trial=4, best_n=2, **mini),
        trial(11, 0.20, commit="d", params={"lr": 0.09, "depth": 3}, verdict="screened",
              judgement=judgement("screened", 0.2, 0.3, best_trial=8, best_n=2, **mini)),
    ]  # fmt: skip
    lab = hand_store(tmp_path / "lab", trials)
    out = write_report(lab, config(direction="minimize", metric="val_loss"), top_k=3)
    board = board_of(out, 3)
    assert board["direction"] == "minimize"
    assert [c["trial"] for c in board["candidates"]] == [8, 4, 1]
    assert [c["rank"] for c in board["candidates"]] == [1, 2, 3]
    assert board["final_pick"] == 8
    assert board["ratchet"]["screened"] == 1  # 11: the night stopped before its confirmation
    text = (out / "final_paper_report.md").read_text()
    summary = section(text, "Summary")
    assert (
        "lowered val_loss from 0.5 ± 0.01 (baseline, n=3) to 0.3 ± 0.01414 (confirmed, n=2; "
        "selection run 0.3): -0.2 in 2 kept step(s)"
    ) in summary
    assert "(trial 4: 0.4, n=2) by +0.1 against a threshold of 0.03" in summary
    assert "1 still awaiting confirmation (the night stopped first)" in summary
    results = section(text, "Results")
    # the lowest figure of all, yet after every confirmed candidate: it is one run
    assert "| 4 | 11 | 0.2 | screened |" in results and "| 5 | 7 | 0.45 | discarded |" in results
    assert "| 11 | lr 0.01→0.09, code | 0.2 | +0.1 / 0.03 | — | awaiting its runs |" in results
    recs = section(text, "Recommendations")
    assert "Trial(s) 11 passed the screen but the night stopped before their confirmation" in recs


def test_a_night_where_nothing_was_kept_says_so(make_lab):
    from nightlab import Lab

    decisions = [
        {"action": "run", "rationale": "a nudge well inside the noise", "params": {"boost": 5e-3}},
        {"action": "run", "rationale": "another nudge inside the noise", "params": {"boost": 1e-2}},
    ]
    lab = make_lab(decisions=decisions, max_trials=5, confirm_runs=2)
    Lab(lab).run(report=lambda line: None)
    out = write_report(lab, Lab(lab).config)
    text = (out / "final_paper_report.md").read_text()
    summary = section(text, "Summary")
    assert "**Status**: Failed — no trial beat the baseline" in summary
    assert "nothing beat the baseline" in summary
    assert "Nothing beat the baseline by more than the threshold" in section(
        text, "Recommendations"
    )
    assert "adopt" not in text
    story = (out / "final_condensed_story.md").read_text()
    assert "Nothing beat the baseline" in story
    assert ", 0 kept, 0 not confirmed (false keeps avoided);" in story
    assert board_of(out)["final_pick"] == 1  # the baseline stays the base


def test_a_test_metric_event_is_reported_for_the_final_pick_only(tmp_path):
    events = [
        ("test_metric", {"trial": 7, "metric": "test_acc", "value": 0.5}),  # an older one
        ("test_metric", {"trial": 4, "metric": "test_acc", "value": 0.93, "test_trial": 8}),
    ]
    test_run = trial(8, 1.5, kind="test", verdict="test", commit="c4", params=CONFIRMED)
    lab = confirmation_night(tmp_path, [test_run], events=events)
    out = write_report(lab, config())
    board = board_of(out)
    (pick,) = [c for c in board["candidates"] if c["final_pick"]]
    assert pick["trials"] == [4, 5, 6]  # the test run is no evidence for the candidate
    assert [(c["trial"], c["test"]) for c in board["candidates"] if c["test"]] == [
        (4, {"metric": "test_acc", "value": 0.93})
    ]
    summary = section((out / "final_paper_report.md").read_text(), "Summary")
    assert "test_acc = **0.93** for trial 4" in summary and "0.5" not in summary.split("test")[-1]


def test_a_skipped_test_figure_is_reported_with_its_reason(tmp_path):
    events = [("test_metric_skipped", {"reason": "no time left"})]
    out = write_report(confirmation_night(tmp_path, events=events), config())
    summary = section((out / "final_paper_report.md").read_text(), "Summary")
    assert "**Held-out test**: no test figure (test_metric_skipped: no time left)" in summary
    assert "no time left" in (out / "final_condensed_story.md").read_text()
    assert all(c["test"] is None for c in board_of(out)["candidates"])


def test_a_long_night_is_condensed_to_40_lines_keeping_what_matters(tmp_path):
    trials = [*baseline([1.0, 1.01, 0.99])]
    for i in range(4, 120):
        kept = i in (20, 90)
        failed = i % 17 == 0
        trials.append(
            trial(i, None if failed else 1.0 + (0.5 if kept else 0.0) + i * 1e-4,
                  status="failed" if failed else "succeeded",
                  verdict="kept" if kept else "discarded", commit=f"c{i}",
                  params={"lr": 1e-3 + i * 1e-4, "depth": 2},
                  reason="exit status 1" if failed else None)
        )  # fmt: skip
    events = [
        ("mentor_review", {"verdict": "off_track", "why": "stalled", "critique": "only lr moves",
                           "question": "why not depth?"}),
        ("mentor_review", {"verdict": "on_track", "why": "cadence", "critique": "steady"}),
    ]  # fmt: skip
    lab = hand_store(tmp_path / "lab", trials, events=events, rejected=["boost: 9 outside"] * 5)
    out = write_report(lab, config())
    story = (out / "final_condensed_story.md").read_text().splitlines()
    assert len(story) <= 40
    text = "\n".join(story)
    assert "trial 20 succeeded" in text and "trial 90 succeeded" in text  # the kept ones
    assert "Mentor: off_track (stalled): only lr moves Question: why not depth?" in text
    assert "Run 1 finished: max_trials=20 reached." in text
    assert "routine line(s) left out" in text
    challenges = section((out / "final_paper_report.md").read_text(), "Challenges")
    assert "only lr moves" in challenges and "The gate rejected 5 decision(s)" in challenges


def test_without_any_objective_the_plots_are_skipped_and_the_report_says_so(tmp_path):
    trials = [
        trial(1, None, kind="baseline", status="failed", verdict="baseline",
              reason="exit status 2: no data here"),
    ]  # fmt: skip
    lab = hand_store(tmp_path / "lab", trials, run_state="stopped", end_reason="baseline failed")
    out = write_report(lab, config())
    assert not list(out.glob("*.png"))
    text = (out / "final_paper_report.md").read_text()
    assert all(f"\n## {s}\n" in text for s in SECTIONS)
    assert text.count("**Plot skipped**") == 6  # the five and the learning curves
    assert "**Status**: Failed — the baseline never produced an objective" in text
    assert "exit status 2: no data here" in section(text, "Challenges")
    board = board_of(out)
    assert board["candidates"] == [] and board["final_pick"] is None
    assert "Plot skipped" in (out / "report.html").read_text()


def test_a_single_seed_night_skips_only_the_spread_plot(tmp_path):
    trials = [*baseline([1.0]), trial(2, 1.2, verdict="kept", commit="x")]
    cfg = config(ratchet={"baseline_repeats": 1})
    out = write_report(hand_store(tmp_path / "lab", trials), cfg)
    assert sorted(p.name for p in out.glob("*.png")) == [
        "best_so_far.png",
        "by_dimension.png",
        "objective_per_trial.png",
    ]
    text = (out / "final_paper_report.md").read_text()
    assert "**Plot skipped** — spread over seeds per candidate: no candidate ran with two" in text
    assert "raise `[ratchet] baseline_repeats`" in section(text, "Recommendations")


def test_the_diff_summary_reads_the_trial_patch(tmp_path):
    patch = (
        "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,3 @@\n"
        "-EXTRA = 0.0\n+EXTRA = 1.0\n+print('x')\n"
        "diff --git a/model.py b/model.py\n--- a/model.py\n+++ b/model.py\n@@ -1 +1 @@\n-a\n+b\n"
    )
    assert parse_patch(patch) == {
        "files": ["train.py", "model.py"], "files_changed": 2, "added": 3, "removed": 2
    }  # fmt: skip
    trials = [*baseline([1.0, 1.0]), trial(3, 2.0, verdict="kept", commit="z")]
    lab = hand_store(tmp_path / "lab", trials)
    (lab / ".nightlab" / "trials" / "3").mkdir(parents=True)
    (lab / ".nightlab" / "trials" / "3" / "diff.patch").write_text(patch)
    board = board_of(write_report(lab, config()))
    diffs = {c["trial"]: c["diff"] for c in board["candidates"]}
    assert diffs[3]["files_changed"] == 2 and diffs[1] is None  # no patch, no git: unknown


def test_commits_of_the_same_tree_are_one_candidate(tmp_path):
    lab = tmp_path / "lab"
    lab.mkdir()

    git(lab, "init", "-q")
    (lab / "train.py").write_text("print('score=1')\n")
    git(lab, "add", "train.py")
    git(lab, "commit", "-q", "-m", "first")
    first = git(lab, "rev-parse", "HEAD").strip()
    git(lab, "commit", "-q", "--allow-empty", "-m", "the same code again")
    again = git(lab, "rev-parse", "HEAD").strip()
    assert first != again
    same = {"lr": 0.01, "depth": 2}
    trials = [
        *baseline([1.0, 1.0]),
        trial(3, 1.4, verdict="kept", commit=first, params=same),
        trial(4, 1.6, verdict=None, seed=1, commit=again, params=same),
    ]
    board = board_of(write_report(hand_store(lab, trials), config()))
    top = board["candidates"][0]
    assert top["trials"] == [3, 4] and top["selection"] == 1.4  # the worker's trial
    assert top["n"] == 1 and top["objective_mean"] == pytest.approx(1.6)  # the other run


def test_finish_up_confirmations_are_counted_apart_from_the_ratchets(tmp_path):
    """Trial 4's confirmation runs 5-6 are the ratchet's (decided by worker `ratchet`);
    finish-up later ran it (8) and the baseline (9) again on new seeds: their trial time is
    finish-up's, and they join their candidates' confirmed means."""
    finish = [
        trial(8, 1.51, kind="confirm", verdict="confirmation", seed=1002, commit="c4",
              params=CONFIRMED, confirms=4, wall_s=100.0, worker="finish-up"),
        trial(9, 1.0, kind="confirm", verdict="confirmation", seed=1000, confirms=1,
              wall_s=50.0, worker="finish-up"),
    ]  # fmt: skip
    out = write_report(confirmation_night(tmp_path, finish), config())
    board = board_of(out)
    ratchet = board["ratchet"]
    assert (ratchet["confirmation_ratchet_runs"], ratchet["confirmation_finishup_runs"]) == (2, 2)
    assert ratchet["confirmation_ratchet_s"] == 60.0  # the hand store's 30 s per run
    assert ratchet["confirmation_finishup_s"] == 150.0
    assert ratchet["confirmation_total_s"] == 7 * 30.0 + 150.0  # trials 1-7, then 8 and 9
    assert ratchet["confirmation_share"] == pytest.approx(60 / 360)
    by_trial = {c["trial"]: c for c in board["candidates"]}
    assert by_trial[4]["objectives"] == [1.52, 1.48, 1.51] and by_trial[4]["n"] == 3
    assert by_trial[1]["n"] == 4 and by_trial[1]["selection"] is None
    summary = section((out / "final_paper_report.md").read_text(), "Summary")
    assert (
        "Confirming cost 60 s of trial time in 2 ratchet confirmation run(s), 16.7% of the "
        "night's 6 min; finish-up's confirmation runs, counted apart: 2.5 min in 2 run(s)."
    ) in summary


def test_without_confirmation_runs_a_kept_single_run_is_reported_as_one(tmp_path):
    """`confirm_runs = 0`: the old single-run rule keeps trial 4 on its one run; the report
    says it is a single run, with the figures of the verdict that kept it."""
    keep = judgement("kept", 1.3, 1.0, z=2.0, threshold=0.046)
    kept = trial(4, 1.3, verdict="kept", commit="k", params=CONFIRMED, judgement=keep)
    trials = [*baseline([1.0, 1.01, 0.99]), kept]
    out = write_report(hand_store(tmp_path / "lab", trials), config(ratchet={"confirm_runs": 0}))
    board = board_of(out)
    assert [(c["trial"], c["confirmed"]) for c in board["candidates"]] == [(1, True), (4, False)]
    assert board["final_pick"] == 4  # kept, as the ratchet did
    text = (out / "final_paper_report.md").read_text()
    summary = section(text, "Summary")
    z = 0.3 / (0.02 * (1 + 1 / 3) ** 0.5)
    assert "raised score from 1 ± 0.01 (baseline, n=3) to 1.3 (a single run): +0.3" in summary
    assert (
        "Its single run beat the best of that moment (the baseline: 1, n=3) by +0.3 against a "
        f"threshold of 0.046: z = {z:.3g} where the rule asks z > 2 (σ 0.02, df 2)."
    ) in summary
    assert "`confirm_runs = 0`: a worker's trial is kept on its single run" in text
    assert "| 4 | lr 0.001→0.01, depth 2→4, code | 1.3 | +0.3 / 0.046 | — | kept on one run" in text
    assert "rests on one seed" in section(text, "Recommendations")
