"""Attacks on plans carried onto a newer best (loop/rebase.py, loop/admission.py) and on the
twin check: the merged result must be judged like any edit, and a repeat of a trial must be
caught however its parameters are spelled."""

from __future__ import annotations

from nightlab.agents.decision import Decision, Edit
from nightlab.config import load_config
from nightlab.loop.admission import admit
from nightlab.loop.journal import Journal
from nightlab.loop.rebase import carry
from nightlab.store.db import Store
from nightlab.trials.workspace import Workspace

TRAIN = "train.py"


def setup(make_lab, editable: str = '"train.py"', extra: str = ""):
    lab = make_lab(toml_extra=extra)
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace('editable = ["train.py"]', f"editable = [{editable}]"))
    ws = Workspace(lab, lab / ".nightlab", "tiny")
    db = lab / ".nightlab" / "state.db"
    Store(db).migrate()
    return lab, ws, db, ws.snapshot(), load_config(lab)


def run(rationale: str, *edits: tuple[str, str, str], **params) -> Decision:
    return Decision(action="run", rationale=rationale, params=params,
                    edits=[Edit(file=f, search=s, replace=r) for f, s, r in edits])  # fmt: skip


def test_a_plan_writing_into_a_folder_the_best_made_a_file_is_asked_again(make_lab):
    """The best made `pk1` a file; a plan made before writes `pk1/mod.py`. carry() took it
    (absent on both sides) and commit_files failed in git (`appears as both a file and as
    a directory`): a WorkspaceError, so a plain wait, not the conflict asked again."""
    lab, ws, db, old, cfg = setup(make_lab, editable='"train.py", "pk?", "pk?/*"')
    best = ws.commit_files(old, {"pk1": "A = 1\n"}, "pk1 as a file")
    plan = run("a module in a new package", ("pk1/mod.py", "", "B = 2\n"))
    done = admit(plan, cfg, ws, db, best, cfg.defaults(), planned_on=old)
    assert not done.gate.accepted and done.reask and done.carried.conflicts == ["pk1/mod.py"]
    # and the other way round: the best made pk2/ a folder, the plan writes pk2 as a file
    best = ws.commit_files(old, {"pk2/mod.py": "A = 1\n"}, "pk2 as a folder")
    assert carry(ws, old, best, {"pk2": "B = 2\n"}).conflicts == ["pk2"]


def test_a_categorical_value_spelled_as_a_float_is_a_twin(make_lab):
    choices = "\n[search.bs]\nchoices = [32, 64]\ndefault = 32\n"
    lab, ws, db, old, cfg = setup(make_lab, extra=choices)
    store = Store(db)
    log = Journal(store, lab / ".nightlab", "tiny", "score")
    log.open_run(None, None, {})
    ran = run("bigger batches are steadier", bs=64)
    params = cfg.normalize({**cfg.defaults(), **ran.params})
    log.open_trial("w", ran, kind="trial", params=params, seed=0, slot=0, commit=old,
                   base_commit=old, base_trial_id=None, confirms=None)  # fmt: skip
    again = admit(run("bigger batches are steadier", bs=64.0), cfg, ws, db, old, cfg.defaults())
    assert not again.gate.accepted and "is running now" in again.gate.reasons[0]


def test_a_stale_plan_with_new_params_on_code_the_best_holds_runs_its_params(make_lab):
    lab, ws, db, old, cfg = setup(make_lab)
    best = ws.commit_files(old, {TRAIN: ws.read(old, TRAIN).replace("EXTRA = 0.0", "EXTRA = 1.0")},
                           "X")  # fmt: skip
    plan = run("raise EXTRA, with a boost", (TRAIN, "EXTRA = 0.0", "EXTRA = 1.0"), boost=2.0)
    done = admit(plan, cfg, ws, db, best, cfg.defaults(), planned_on=old)
    assert done.gate.accepted and done.commit == best and done.rebased and not done.reask
    assert "its params run on it" in done.gate.notes[-1]
    same = run("raise EXTRA, no more", (TRAIN, "EXTRA = 0.0", "EXTRA = 1.0"))
    done = admit(same, cfg, ws, db, best, cfg.defaults(), planned_on=old)
    assert not done.gate.accepted and done.reask and "already in the best" in done.gate.reasons[0]


def test_what_held(make_lab):
    """A protected or non-editable file is refused on a stale plan as on a fresh one (the
    merged files are the plan's files); a merged spec is normalised; the rebased commit's
    parent is the current best."""
    lab, ws, db, old, cfg = setup(make_lab, extra="")
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("[trial]\n", '[trial]\nprotected = ["IDEA.md"]\n'))
    cfg = load_config(lab)
    best = ws.commit_files(old, {TRAIN: ws.read(old, TRAIN).replace("EXTRA = 0.0", "EXTRA = 1.0")},
                           "X")  # fmt: skip
    for target in ("IDEA.md", "nightlab.toml", ".git/config", "../x.py"):
        plan = run("change what no plan may change", (target, "", "x\n"))
        done = admit(plan, cfg, ws, db, best, cfg.defaults(), planned_on=old)
        assert not done.gate.accepted and not done.reask, target
    fine = run("half a point more", (TRAIN, 'mode = p.get("mode", "ok")',
                                     'mode = p.get("mode", "ok")\nscore += 0.5'))  # fmt: skip
    done = admit(fine, cfg, ws, db, best, cfg.defaults(), planned_on=old)
    assert done.rebased and ws.git("rev-parse", f"{done.commit}^") == best
    assert "EXTRA = 1.0" in ws.read(done.commit, TRAIN)
