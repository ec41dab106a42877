"""Learning curves in the report: the objective's stored history of the baseline and the best
candidates; trials without a history left out; a 200k-point history thinned, fast and small."""

from __future__ import annotations

import json
import time
from pathlib import Path

from report_nights import baseline, config, hand_store, is_png, section, trial

from nightlab.report import write_report
from nightlab.report.curves import MAX_POINTS, history, thin


def write_history(lab: Path, trial_id: int, values: list[float], metric: str = "score") -> None:
    folder = lab / ".nightlab" / "trials" / str(trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": i, "metrics": {metric: v}, "source": "log"}) for i, v in
             enumerate(values)]  # fmt: skip
    lines.insert(1, json.dumps({"step": 0, "metrics": {"loss": 9.0}, "source": "log"}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def night(tmp_path: Path) -> Path:
    trials = [*baseline([1.0, 1.01, 0.99]),
              trial(4, 1.2, params={"lr": 0.01, "depth": 2}),
              trial(5, 1.1, params={"lr": 0.02, "depth": 2})]  # fmt: skip
    return hand_store(tmp_path / "lab", trials)


def test_the_curves_of_the_baseline_and_the_best_are_drawn(tmp_path):
    lab = night(tmp_path)
    write_history(lab, 1, [0.5, 0.8, 1.0])
    write_history(lab, 4, [0.6, 0.9, 1.2])  # trial 5 recorded nothing: left out, no error
    out = write_report(lab, config())
    assert is_png(out / "learning_curves.png")
    results = section((out / "final_paper_report.md").read_text(), "Results")
    assert "](learning_curves.png)" in results


def test_without_any_history_the_plot_says_why(tmp_path):
    out = write_report(night(tmp_path), config())
    assert not (out / "learning_curves.png").exists()
    text = (out / "final_paper_report.md").read_text()
    assert "no trial recorded a history of score" in text


def test_a_200k_point_history_stays_fast_and_small(tmp_path):
    lab = night(tmp_path)
    n = 200_000
    write_history(lab, 4, [1.0 - 1.0 / (i + 1) for i in range(n)])
    write_history(lab, 1, [0.9 - 1.0 / (i + 1) for i in range(n)])
    xs, ys = history(lab / ".nightlab" / "trials" / "4", "score")
    assert len(xs) == n  # every point is read, the other metric's line skipped
    tx, ty = thin(xs, ys)
    assert len(tx) == MAX_POINTS and tx[0] == 0 and tx[-1] == n - 1  # the ends kept
    start = time.monotonic()
    out = write_report(lab, config())
    assert time.monotonic() - start < 30
    png = out / "learning_curves.png"
    assert is_png(png) and png.stat().st_size < 150_000
