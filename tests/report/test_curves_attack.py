"""Hostile review of the learning curves: a trial's recorded history is the trial's to
choose (any finite float, any count), and the report must still be written."""

from __future__ import annotations

import json

from report_nights import baseline, config, hand_store, trial

from nightlab.report import write_report
from nightlab.report.curves import history


def _write(lab, trial_id: int, points: list) -> None:
    folder = lab / ".nightlab" / "trials" / str(trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"step": s, "metrics": {"score": v}, "source": "log"}) for s, v in points]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_huge_finite_values_in_a_history_do_not_stop_the_report(tmp_path):
    lab = hand_store(tmp_path / "lab", baseline([1.0, 1.01, 0.99]))
    _write(lab, 1, [(0, 1.0), (1, 1e308), (2, -1e308), (3, 1.0)])
    out = write_report(lab, config())
    assert (out / "report.html").is_file()


def test_a_number_too_large_for_a_float_is_left_out_not_raised(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    big = "9" * 400
    (folder / "metrics.jsonl").write_text(
        '{"step": 0, "metrics": {"score": 1}}\n'
        f'{{"step": {big}, "metrics": {{"score": 2}}}}\n'
        f'{{"step": 2, "metrics": {{"score": {big}}}}}\n'
    )
    xs, ys = history(folder, "score")
    assert ys == [1.0, 2.0] and xs[0] == 0.0


def test_an_objective_as_extreme_as_a_float_goes_does_not_stop_the_report(tmp_path):
    trials = [*baseline([1.0, 1.01, 0.99]), trial(4, 1e308), trial(5, -1e308)]
    out = write_report(hand_store(tmp_path / "lab", trials), config())
    assert (out / "report.html").is_file()
    assert "could not draw it" in (out / "final_paper_report.md").read_text()


def test_a_non_ascii_objective_has_its_curve(tmp_path):
    """metrics.jsonl is written with json.dumps: `précision` is stored as `pr\\u00e9cision`."""
    from nightlab.store.folder import finish

    points = [{"step": s, "name": "précision", "value": v, "source": "log"}
              for s, v in enumerate([0.1, 0.2, 0.3])]  # fmt: skip
    finish(tmp_path, {}, points)
    assert history(tmp_path, "précision") == ([0.0, 1.0, 2.0], [0.1, 0.2, 0.3])
