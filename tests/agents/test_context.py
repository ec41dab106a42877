"""What an LLM worker reads each cycle: priority signals from the night's record, and a
context that stays the same size however long the night has run."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightlab import Lab
from nightlab.agents import context, signals
from nightlab.config import load_config
from nightlab.store import read

from conftest import execute


def prompt(lab: Path) -> tuple[str, dict]:
    cfg, db = load_config(lab), lab / ".nightlab" / "state.db"
    ctx = context.gather(
        cfg, lab, db, trials_left=10, deadline=None, sigma=0.01, in_flight=[], stalled=None
    )
    ctx["objective"] = cfg.objective.model_dump()
    return context.render(ctx), ctx["signals"]


def run(make_lab, decisions: list[dict], name: str = "lab") -> Path:
    lab = make_lab(decisions=decisions, max_trials=3 + len(decisions), name=name)
    Lab(lab).run(report=lambda line: None)
    return lab


def probe(i: int, **extra) -> dict:
    return {
        "action": "run",
        "rationale": f"probe {i}: a tiny boost to map the response",
        "dimension": "optimization",
        "params": {"boost": i / 10000},
        **extra,
    }


def test_signals_rise_with_the_evidence_and_only_advise(make_lab):
    stuck = run(make_lab, [probe(i) for i in range(1, 8)])
    text, sig = prompt(stuck)
    assert sig["breakout_priority"]["score"] >= 0.8 and sig["research_priority"]["score"] >= 0.8
    assert "# Signals (advice, not orders)" in text
    assert "breakout_priority high" in text and "untried: augmentation" in text
    assert "optimization," not in text.split("untried:")[1].split(")")[0]  # it was tried
    assert sig["non_training_priority"]["score"] == 0 and "non_training" not in text

    crashing = run(make_lab, [probe(i, params={"mode": "crash", "boost": i / 100})
                              for i in range(1, 4)], name="crash")  # fmt: skip
    text, sig = prompt(crashing)
    assert sig["non_training_priority"]["score"] == 1.0 and "fix the cause" in text

    # the same streak stopped by the pruner instead: those trials ran well, nothing to fix
    execute(crashing, "UPDATE trials SET status = 'pruned' WHERE status = 'failed'")
    text, sig = prompt(crashing)
    assert sig["non_training_priority"]["score"] == 0 and "fix the cause" not in text

    improving = run(make_lab, [probe(1, params={"boost": 1.0})], name="good")
    text, sig = prompt(improving)
    assert all(s["score"] < 0.5 for s in sig.values()) and "# Signals" not in text


def test_todo_pressure_counts_the_open_backlog(make_lab):
    lab = run(make_lab, [probe(i, todo_new=[f"check idea {i}", f"look at {i}"])
                         for i in range(1, 13)])  # fmt: skip
    with read.connect(lab / ".nightlab" / "state.db") as conn:
        open_todos = read.todo_focus(conn)["open"]
        assert signals.compute(conn, open_todos)["todo_pressure"]["score"] == open_todos / 20
    assert open_todos >= 10


@pytest.mark.slow
def test_the_context_stays_bounded_after_200_cycles(make_lab):
    """Every cycle adds TODOs, notes and a trial; the prompt must not grow with them."""

    def busy(i: int) -> dict:
        return probe(
            i,
            todo_new=[f"check idea {i} against the baseline", f"revisit knob {i % 7}"],
            notes_update=f"note {i}: " + "the response to boost looks flat here. " * 8,
            data_exploration_update=f"exploration {i}: " + "class balance looks even. " * 6,
        )

    lab = make_lab(decisions=[busy(i) for i in range(1, 201)], max_trials=53)
    Lab(lab).run(report=lambda line: None)
    early, _ = prompt(lab)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("max_trials = 53", "max_trials = 203"))
    final = Lab(lab).run(report=lambda line: None)
    assert final["trials"]["total"] == 203
    late, _ = prompt(lab)
    with read.connect(lab / ".nightlab" / "state.db") as conn:
        notes = conn.execute("SELECT sum(length(text)) FROM notes").fetchone()[0]
    assert notes > 80_000  # what the night wrote; the prompt reads only its tails
    print(f"prompt after 53 trials: {len(early)} chars, after 203: {len(late)} chars")
    assert len(late) < 8000, len(late)
    assert len(late) <= len(early) * 1.15, (len(early), len(late))


def test_the_prompt_names_the_spec_fields_and_the_generated_module_rules(make_lab):
    extra = (
        'spec = "spec.json"\ngenerated = ["generated/model_*.py"]\n\n'
        "[spec.lr]\nlow = 0.001\nhigh = 1.0\nlog = true\ndefault = 0.1\n\n"
        '[spec."optim.name"]\nchoices = ["adam", "sgd"]\ndefault = "adam"\n\n'
        "[smoke]\ninput_shape = [1, 8, 8]\nnum_classes = 10\n"
    )
    lab = make_lab(decisions=[], trial_extra=extra, max_trials=1)
    (lab / "spec.json").write_text('{"lr": 0.1}\n')
    Lab(lab).run(report=lambda line: None)
    text, _ = prompt(lab)
    assert "- lr: float in [0.001, 1.0] (log scale) (default 0.1)" in text
    assert "- optim.name: one of ['adam', 'sgd'] (default 'adam')" in text
    assert "# Files you may edit\ntrain.py, spec.json, generated/model_*.py" in text
    assert "build(num_classes) -> torch.nn.Module" in text


@pytest.mark.parametrize(
    ("text", "heading"),
    [
        ("# Brief\nClassify digits.\n", "# Brief\nClassify digits."),  # the template's IDEA.md
        ("# Digits: classify 8x8 images\n\nUse train.py.", "# Brief: Digits: classify 8x8"),
        ("Maximise score.\n", "# Brief\nMaximise score."),
    ],
)
def test_the_brief_is_headed_once(text, heading):
    shown = context.render({"objective": {"metric": "score", "direction": "maximize"},
                            "brief": text})  # fmt: skip
    assert shown.startswith(heading) and shown.count("# Brief") == 1
    assert shown.count(text.strip().splitlines()[-1]) == 1
