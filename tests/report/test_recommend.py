"""Recommendations name only what the lab can change: its `[search]` knobs, nightlab's own
settings, and code dimensions only when an agent may edit code. A parameter outside the
search space never appears, however well it correlates with the objective."""

from __future__ import annotations

from report_nights import baseline, config, hand_store, section, trial

from nightlab.report import write_report

DIMENSIONS = ("augmentation", "preprocessing", "data_sampling", "loss", "model_arch",
              "optimization", "evaluation")  # fmt: skip


def recommendations(tmp_path, **cfg) -> str:
    # `data_fraction` (and the seed) ride along in the params and track the objective
    # closely, but they are no knob of [search]: the lab cannot change them
    trials = [*baseline([1.0, 1.01, 0.99])]
    for i, frac in enumerate((0.2, 0.4, 0.6, 0.8), start=4):
        params = {"lr": 1e-3, "depth": 2, "data_fraction": frac}
        trials.append(trial(i, 0.9 + frac / 2, params=params, seed=i, dimension="optimization",
                            commit=f"c{i}"))  # fmt: skip
    out = write_report(hand_store(tmp_path / "lab", trials), config(**cfg))
    return section((out / "final_paper_report.md").read_text(), "Recommendations")


def test_no_recommendation_names_what_the_lab_cannot_change(tmp_path):
    recs = recommendations(tmp_path)
    assert "Knobs never varied" in recs and "`lr`" in recs  # a real knob is named
    assert "data_fraction" not in recs
    assert "seed" not in recs.lower()
    assert "validation set" not in recs  # the data are not the lab's to change
    for d in DIMENSIONS:  # the search worker only sets knobs: no code dimension to suggest
        assert f"`{d}`" not in recs


def test_with_a_code_editing_agent_untried_dimensions_are_named(tmp_path):
    recs = recommendations(
        tmp_path, agents={"worker": "openai:gpt-4o"},
        trial={"editable": ["train.py"], "protected": ["eval.py"]},
    )  # fmt: skip
    assert "Untried dimensions" in recs and "`model_arch`" in recs
    assert "`evaluation`" not in recs  # the lab sealed its evaluation (protected files)
    assert "data_fraction" not in recs
