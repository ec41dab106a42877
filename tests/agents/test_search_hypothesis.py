"""The `search` worker's hypothesis names what its proposal changes: the knobs moved away
from the current best's params (from the defaults while there is no best), from what to
what, and the best it claims to beat."""

import re

from nightlab.agents.search import HYPOTHESIS_CHARS, SearchWorker, hypothesis
from nightlab.store import fmt

from conftest import make_config

SEARCH = {
    "lr": {"low": 1e-4, "high": 0.3, "log": True, "default": 0.01},
    "width": {"choices": [8, 16, 32, 64], "default": 16},
    "dropout": {"low": 0.0, "high": 0.5, "default": 0.1},
    "epochs": {"low": 4, "high": 20, "type": "int", "default": 10},
}
DEFAULTS = {"lr": 0.01, "width": 16, "dropout": 0.1, "epochs": 10}
BEST = {"objective": 0.9694, "trial": 4, "params": dict(DEFAULTS)}


def moved_part(text: str) -> str:
    """The list of moved knobs: what comes before '(… unchanged)' or ' beats '."""
    return re.split(r" \(| beats ", text, maxsplit=1)[0]


def unchanged_part(text: str) -> str:
    found = re.search(r"\(([^()]*) unchanged\)", text)
    return found.group(1) if found else ""


def test_names_the_moved_knobs_from_the_best_and_only_those():
    params = {"lr": 0.031622776601683794, "width": 32, "dropout": 0.1, "epochs": 10}
    text = hypothesis(params, BEST, DEFAULTS, "val_acc")
    assert text == (
        "lr 0.01 → 0.03162, width 16 → 32 (dropout, epochs unchanged) "
        "beats the best (trial 4, val_acc 0.9694) beyond the noise"
    )


def test_without_a_best_it_compares_with_the_defaults():
    params = {"lr": 0.01, "width": 16, "dropout": 0.25, "epochs": 15}
    text = hypothesis(params, None, DEFAULTS, "val_acc")
    assert text == (
        "dropout 0.1 → 0.25, epochs 10 → 15 (lr, width unchanged) "
        "beats the defaults beyond the noise"
    )


def test_compares_with_the_best_params_not_the_defaults():
    best = {"objective": 0.98, "trial": 7, "params": {**DEFAULTS, "lr": 0.05, "epochs": 16}}
    params = {"lr": 0.05, "width": 16, "dropout": 0.1, "epochs": 18}
    text = hypothesis(params, best, DEFAULTS, "val_acc")
    assert moved_part(text) == "epochs 16 → 18"
    assert unchanged_part(text) == "lr, width, dropout"
    assert "trial 7, val_acc 0.98" in text


def test_a_best_with_only_some_params_is_read_over_the_defaults():
    best = {"objective": 0.9, "trial": 2, "params": {"lr": 0.05}}
    params = {"lr": 0.05, "width": 32, "dropout": 0.1, "epochs": 10}
    text = hypothesis(params, best, DEFAULTS, "val_acc")
    assert moved_part(text) == "width 16 → 32"
    assert unchanged_part(text) == "lr, dropout, epochs"


def test_a_change_below_the_printed_digits_counts_as_unchanged():
    params = {**DEFAULTS, "lr": 0.0100000001, "width": 64}
    text = hypothesis(params, BEST, DEFAULTS, "val_acc")
    assert moved_part(text) == "width 16 → 64"
    assert "lr" in unchanged_part(text)


def test_nothing_moved_says_so():
    text = hypothesis(dict(DEFAULTS), BEST, DEFAULTS, "val_acc")
    assert "→" not in text
    assert "the same settings as the best (trial 4, val_acc 0.9694)" in text


def test_many_moved_knobs_are_capped_and_counted():
    names = [f"knob_{i}" for i in range(10)]
    defaults = {n: 1.0 for n in names} | {"kept_a": 1, "kept_b": 2}
    params = {n: 2.5 for n in names} | {"kept_a": 1, "kept_b": 2}
    text = hypothesis(params, None, defaults, "loss")
    assert moved_part(text) == (", ".join(f"knob_{i} 1 → 2.5" for i in range(6)) + " and 4 more")
    assert unchanged_part(text) == "kept_a, kept_b"
    assert len(text) <= HYPOTHESIS_CHARS


def test_long_names_and_values_still_fit():
    names = [f"model.encoder.layer_{i}.a_rather_long_hyperparameter_name" for i in range(12)]
    defaults = {n: "x" * 60 for n in names} | {f"same_{i}": 0 for i in range(8)}
    params = {n: "y" * 60 for n in names} | {f"same_{i}": 0 for i in range(8)}
    best = {"objective": 0.5, "trial": 12, "params": defaults}
    text = hypothesis(params, best, defaults, "val_loss")
    assert len(text) <= HYPOTHESIS_CHARS
    assert text.endswith("beats the best (trial 12, val_loss 0.5) beyond the noise")
    assert "more" in text and "8 other knobs unchanged" in text


def check_decision(text: str, params: dict, ref: dict) -> None:
    """Every moved knob named with its old and new value; no unmoved knob among them."""
    moved = moved_part(text)
    for name, new in params.items():
        if fmt.value(ref[name]) != fmt.value(new):
            assert f"{name} {fmt.value(ref[name])} → {fmt.value(new)}" in moved
        else:
            assert name not in moved
            assert name in unchanged_part(text)


def test_the_worker_decision_carries_the_hypothesis_with_and_without_a_best():
    cfg = make_config("val_acc", "maximize", search=SEARCH)
    assert cfg.defaults() == DEFAULTS
    worker = SearchWorker(cfg, seed=0)

    first = worker.decide({"best": None})  # still measuring the baseline: vs the defaults
    check_decision(first.hypothesis, first.params, DEFAULTS)
    assert first.hypothesis.endswith("beats the defaults beyond the noise")
    assert worker.decide({}).hypothesis.endswith("beats the defaults beyond the noise")

    # a best that shares width and epochs with the next proposal: those two are unchanged
    upcoming = SearchWorker(cfg, seed=0)
    for _ in range(2):
        upcoming.decide({})
    shared = upcoming.decide({}).params
    best_params = {**DEFAULTS, "width": shared["width"], "epochs": shared["epochs"]}
    best = {"objective": 0.9694, "trial": 4, "params": best_params}
    decision = worker.decide({"best": best})
    assert decision.params == shared
    check_decision(decision.hypothesis, decision.params, best_params)
    assert set(unchanged_part(decision.hypothesis).split(", ")) == {"width", "epochs"}
    assert decision.hypothesis.endswith("beats the best (trial 4, val_acc 0.9694) beyond the noise")
