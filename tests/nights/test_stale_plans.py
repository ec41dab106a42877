"""Plans made on an older best (issue 15, B3): a slow worker plans while a trial runs; when
that trial is kept, the plan is carried onto the new best by a three-way merge — never
committed as it was made, which would undo the kept change — or, when it cannot be, asked
again at once. A plan repeating a trial in flight is refused, and the worker is shown what
each trial in flight changes.

The worker is a stand-in coding-agent CLI (stale_agent.py) that answers by rules on the
code it was given and its prompt: deterministic, whatever the timing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nightlab import Lab
from nightlab.agents import BaseWorker, context
from nightlab.agents.decision import Decision, Edit
from nightlab.config import load_config
from nightlab.loop import inflight
from nightlab.loop.admission import admit
from nightlab.loop.rebase import carry
from nightlab.store.db import Store
from nightlab.trials.workspace import Workspace

from conftest import git, rows

AGENT = Path(__file__).with_name("stale_agent.py")
TRAIN = "train.py"
X = [TRAIN, "EXTRA = 0.0", "EXTRA = 1.0"]  # the first trial's change: score 1 → 2
Y = [TRAIN, 'mode = p.get("mode", "ok")', 'mode = p.get("mode", "ok")\nscore += 0.5']
RUNNING = "# Running now"


def decision(rationale: str, **params: float) -> dict:
    return {"action": "run", "rationale": rationale, "hypothesis": rationale,
            "dimension": "model_arch", "params": params}  # fmt: skip


STOP = {"action": "stop", "rationale": "nothing left worth trying tonight"}


def agent_lab(make_lab, tmp_path: Path, rules: list[dict], max_trials: int) -> Path:
    """The tiny lab whose worker is the stand-in agent following `rules`, with a `sleep`
    knob (how long a trial runs: long enough for the agent to plan while it does)."""
    (tmp_path / "rules.json").write_text(json.dumps(rules))
    argv = ["python3", str(AGENT), "{prompt_file}", "{decision_file}", str(tmp_path / "rules.json")]
    extra = (
        "\n[search.sleep]\nlow = 0.0\nhigh = 30.0\ndefault = 0.0\n"
        f"\n[agents.commands.stale]\nargv = {json.dumps(argv)}\ntimeout_s = 60\n"
    )
    lab = make_lab(max_trials=max_trials, toml_extra=extra)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace('worker = "search"', 'worker = "command:stale"'))
    return lab


def trials(lab: Path) -> list:
    return rows(lab, "SELECT id, [commit], base_commit, verdict, objective, status FROM trials "
                "WHERE kind='trial' ORDER BY id")  # fmt: skip


def events(lab: Path, kind: str) -> list[dict]:
    return [json.loads(r[0]) for r in rows(lab, "SELECT data FROM events WHERE kind=?", kind)]


def code(lab: Path, commit: str) -> str:
    return git(lab, "show", f"{commit}:{TRAIN}")


def prompts(lab: Path) -> list[str]:
    """What the agent was shown, call by call."""
    runs = sorted((lab / ".nightlab" / "agents").iterdir())
    return [(run / "prompt.md").read_text() for run in runs]


def rejected(lab: Path) -> list[str]:
    return [r for (body,) in rows(lab, "SELECT reasons FROM decisions WHERE accepted=0")
            for r in json.loads(body)]  # fmt: skip


def test_a_plan_made_before_a_kept_trial_is_rebased_onto_it(make_lab, tmp_path):
    """1 slot: trial A (X) runs and is kept while the agent plans Y on the old best, as a
    whole file. Y's trial holds X and Y, is based on A, and the rebase is recorded."""
    rules = [
        {"when": {"prompt_lacks": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [X], "decision": decision("raise EXTRA to lift the score", sleep=0.5)},
        {"when": {"prompt_has": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [Y], "decision": decision("add half a point after the mode is read")},
    ]  # fmt: skip
    lab = agent_lab(make_lab, tmp_path, rules, max_trials=5)  # 3 baseline runs, A, Y
    lines: list[str] = []
    Lab(lab).run(report=lines.append)
    a, y = trials(lab)
    assert a["verdict"] == "kept" and "EXTRA = 1.0" in code(lab, a["commit"])
    merged = code(lab, y["commit"])
    assert "EXTRA = 1.0" in merged and "score += 0.5" in merged  # X never reverted
    assert y["base_commit"] == a["commit"] and y["objective"] == pytest.approx(2.5, abs=0.02)
    assert git(lab, "rev-parse", f"{y['commit']}^").strip() == a["commit"]
    # the agent made Y on the old best: its whole-file edit still says EXTRA = 0.0
    (body,) = rows(lab, "SELECT body FROM decisions d JOIN trials t ON t.decision_id = d.id "
                   "WHERE t.id = ?", y["id"])  # fmt: skip
    assert "EXTRA = 0.0" in json.loads(body[0])["edits"][0]["replace"]
    (moved,) = events(lab, "plan_rebased")
    assert moved["onto"] == a["commit"] and moved["onto_trial"] == a["id"]
    assert moved["commit"] == y["commit"] and moved["files"] == [TRAIN]
    assert moved["planned_on"] == rows(lab, "SELECT [commit] FROM trials WHERE id=1")[0][0]
    assert any("rebased onto the best" in line for line in lines)


def test_a_conflicting_plan_is_not_run_and_is_asked_again_on_the_new_best(make_lab, tmp_path):
    """The plan changes the line the kept trial changed: it is not run as it is; the agent
    is asked again at once, on the new best, and its new plan runs."""
    rules = [
        {"when": {"prompt_lacks": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [X], "decision": decision("raise EXTRA to lift the score", sleep=0.5)},
        {"when": {"prompt_has": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [[TRAIN, "EXTRA = 0.0", "EXTRA = 3.0"]],
         "decision": decision("raise EXTRA further, to 3")},
        {"when": {"file": TRAIN, "has": "EXTRA = 1.0"},
         "edits": [[TRAIN, "EXTRA = 1.0", "EXTRA = 1.5"]],
         "decision": decision("raise EXTRA a little more, on the kept code")},
    ]  # fmt: skip
    lab = agent_lab(make_lab, tmp_path, rules, max_trials=5)
    lines: list[str] = []
    Lab(lab).run(report=lines.append)
    a, again = trials(lab)
    assert a["verdict"] == "kept"
    assert again["base_commit"] == a["commit"] and "EXTRA = 1.5" in code(lab, again["commit"])
    assert not any("EXTRA = 3.0" in code(lab, t["commit"]) for t in trials(lab))
    (conflict,) = events(lab, "plan_conflict")
    assert conflict["conflicts"] == [TRAIN] and conflict["onto"] == a["commit"]
    assert "EXTRA = 3.0" in code(lab, conflict["planned"])  # the plan, as made, is kept
    assert any("conflicts with the best's" in r for r in rejected(lab))
    assert any("conflicts with the best" in line and "asked again" in line for line in lines)
    assert len(prompts(lab)) == 3  # X, the conflicting plan, the plan asked again


def test_a_plan_repeating_the_trial_in_flight_is_refused(make_lab, tmp_path):
    """2 slots: while trial A runs, the agent is shown what A changes (its files and diff)
    and told not to repeat it; a plan that does (same code, same params) is refused."""
    rules = [
        {"when": {"prompt_lacks": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [X], "decision": decision("raise EXTRA to lift the score", sleep=3.0)},
        {"when": {"prompt_has": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [X], "decision": decision("raise EXTRA to lift the score", sleep=3.0)},
        {"when": {}, "decision": STOP},
    ]  # fmt: skip
    lab = agent_lab(make_lab, tmp_path, rules, max_trials=6)
    Lab(lab).run(slots=2, report=lambda line: None)
    (a,) = trials(lab)
    assert any(f"as trial {a['id']} is running now" in r for r in rejected(lab))
    planned = next(p for p in prompts(lab) if RUNNING in p)
    shown = planned.split(RUNNING)[1]
    assert f"trial {a['id']} (trial): raise EXTRA" in shown
    assert "changes train.py (+1 -1)" in shown and "+EXTRA = 1.0" in shown
    assert '"sleep": 3.0' in shown


def test_a_plan_the_kept_trial_already_made_is_refused_and_asked_again(make_lab, tmp_path):
    """1 slot: the plan repeats trial A, which is kept meanwhile: carried onto A it adds
    nothing, so it is refused ("already in the best") and the agent asked again."""
    rules = [
        {"when": {"prompt_lacks": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [X], "decision": decision("raise EXTRA to lift the score", sleep=0.5)},
        {"when": {"prompt_has": RUNNING, "file": TRAIN, "has": "EXTRA = 0.0"},
         "edits": [X], "decision": decision("raise EXTRA to lift the score, again")},
        {"when": {"file": TRAIN, "has": "EXTRA = 1.0"}, "decision": STOP},
    ]  # fmt: skip
    lab = agent_lab(make_lab, tmp_path, rules, max_trials=6)
    final = Lab(lab).run(report=lambda line: None)
    (a,) = trials(lab)
    (dup,) = events(lab, "plan_duplicate")
    assert dup["onto"] == a["commit"] and dup["onto_trial"] == a["id"]
    assert any("already in the best" in r for r in rejected(lab))
    assert len(prompts(lab)) == 3 and "stopped the night" in final["end_reason"]


# ------------------------------------------------------------ search/replace (LLM) edits
def repo(make_lab) -> tuple[Path, Workspace, Path, str, str]:
    """A lab's workspace and store: the snapshot (the old best) and trial A's commit (X)."""
    lab = make_lab()
    ws = Workspace(lab, lab / ".nightlab", "tiny")
    db = lab / ".nightlab" / "state.db"
    Store(db).migrate()
    old = ws.snapshot()
    kept = ws.commit_files(old, {TRAIN: ws.read(old, TRAIN).replace(X[1], X[2])}, "X")
    return lab, ws, db, old, kept


def llm(search: str, replace: str) -> Decision:
    return Decision(action="run", rationale="add half a point after the mode is read",
                    edits=[Edit(file=TRAIN, search=search, replace=replace)])  # fmt: skip


def test_search_replace_edits_planned_on_an_old_best_are_rebased(make_lab):
    lab, ws, db, old, kept = repo(make_lab)
    cfg = load_config(lab)
    done = admit(llm(Y[1], Y[2]), cfg, ws, db, kept, cfg.defaults(), planned_on=old)
    assert done.gate.accepted and done.rebased and done.planned_on == old
    assert ws.git("rev-parse", f"{done.commit}^") == kept
    assert "EXTRA = 1.0" in ws.read(done.commit, TRAIN)
    assert "score += 0.5" in ws.read(done.commit, TRAIN)
    assert "EXTRA = 0.0" in ws.read(done.planned, TRAIN)  # the plan as made, on its base
    # the same line as the kept change: a conflict, to ask again
    clash = admit(llm("EXTRA = 0.0", "EXTRA = 3.0"), cfg, ws, db, kept, cfg.defaults(),
                  planned_on=old)  # fmt: skip
    assert not clash.gate.accepted and clash.reask and clash.carried.conflicts == [TRAIN]
    assert clash.commit == kept
    # the kept change itself: already in the best
    same = admit(llm(X[1], X[2]), cfg, ws, db, kept, cfg.defaults(), planned_on=old)
    assert same.reask and same.carried.contained and "already in the best" in same.gate.reasons[0]
    # a search text only the newer code holds (read after the best moved): judged on it
    newer = admit(llm("EXTRA = 1.0", "EXTRA = 1.5"), cfg, ws, db, kept, cfg.defaults(),
                  planned_on=old)  # fmt: skip
    assert newer.gate.accepted and not newer.rebased
    assert "EXTRA = 1.5" in ws.read(newer.commit, TRAIN)
    # planned on the best itself: as ever
    plain = admit(llm(Y[1], Y[2]), cfg, ws, db, kept, cfg.defaults(), planned_on=kept)
    assert plain.gate.accepted and not plain.rebased and plain.carried is None


class PlanningModel(BaseWorker):
    """An LLM-like slow worker: it reads the code through its view and answers with
    search/replace edits. Its second decision, planned while trial A runs, waits until A
    is kept before reading the code (the best has moved by then)."""

    name, slow, wants_context = "planner", True, True

    def __init__(self) -> None:
        self.calls, self.read = 0, []

    def decide(self, context: dict) -> Decision:
        self.calls += 1
        if self.calls == 1:
            return llm(X[1], X[2]).model_copy(update={"params": {"sleep": 0.5}})
        deadline = time.monotonic() + 20
        while not any(r["verdict"] == "kept" for r in self.view.leaderboard(5)):
            assert time.monotonic() < deadline, "trial A was never kept"
            time.sleep(0.05)
        self.read.append(self.view.read_file(TRAIN))
        return llm(Y[1], Y[2])


def test_an_llm_plan_reads_the_best_it_started_from_and_is_rebased(make_lab, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    """The worker's view stays on the best its thought started from, even after a kept
    trial moved the best; its search/replace edits are carried onto the new best."""
    worker = PlanningModel()
    monkeypatch.setattr("nightlab.loop.loop.make_worker", lambda *a: worker)
    lab = agent_lab(make_lab, tmp_path, [], max_trials=5)
    Lab(lab).run(report=lambda line: None)
    a, y = trials(lab)
    assert a["verdict"] == "kept" and worker.calls == 2
    assert "EXTRA = 0.0" in worker.read[0]  # what it planned on: the old best
    merged = code(lab, y["commit"])
    assert "EXTRA = 1.0" in merged and "score += 0.5" in merged and y["base_commit"] == a["commit"]
    (moved,) = events(lab, "plan_rebased")
    assert moved["onto_trial"] == a["id"] and moved["commit"] == y["commit"]


def test_carry_merges_other_lines_and_refuses_a_file_made_on_both_sides(make_lab):
    lab, ws, db, old, kept = repo(make_lab)
    text = ws.read(old, TRAIN)
    out = carry(ws, old, kept, {TRAIN: text.replace(Y[1], Y[2]), "new.py": "A = 1\n"})
    assert out.clean and "EXTRA = 1.0" in out.files[TRAIN] and out.files["new.py"] == "A = 1\n"
    both = ws.commit_files(kept, {"new.py": "A = 2\n"}, "new.py on the best")
    assert carry(ws, old, both, {"new.py": "A = 1\n"}).conflicts == ["new.py"]
    assert carry(ws, old, both, {"new.py": "A = 2\n"}).contained  # made alike on both
    assert carry(ws, old, kept, {TRAIN: text}).contained  # no change at all: nothing new


def test_what_a_trial_in_flight_changes_is_shown_bounded(make_lab):
    lab, ws, db, old, kept = repo(make_lab)
    big = ws.commit_files(old, {TRAIN: "".join(f"LINE_{i} = {i}\n" for i in range(500))}, "big")
    shown = inflight.changes(ws, old, big, chars=600)
    assert shown["changes"][0]["file"] == TRAIN and shown["changes"][0]["added"] == "500"
    assert len(shown["diff"]) <= 620 and shown["diff"].endswith("… (cut)")
    assert inflight.changes(ws, kept, kept) == {"changes": []}  # a baseline run: no change
    text = "\n".join(context.render_in_flight([{"trial": 7, "kind": "trial", **shown,
                                                 "hypothesis": "h", "params": {"k": 1}}]))
    assert "trial 7 (trial): h" in text and "changes train.py (+500 -" in text
