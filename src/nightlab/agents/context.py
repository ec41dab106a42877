"""The worker's prompt for one cycle: compact, the evidence that matters now."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nightlab.agents.signals as signals
from nightlab import ratchet
from nightlab.agents.errors import AgentError
from nightlab.config import Config
from nightlab.store import fmt, queries, ranking, read
from nightlab.store.redact import redact


def read_mission(lab: Path, cfg: Config, role: str) -> str:
    """A role's extra instructions: the file `[agents] {role}_mission`, else
    `{ROLE}_MISSION.md` in the lab, else `[agents] mission_file`; a named file must exist."""
    key, value = f"{role}_mission", getattr(cfg.agents, f"{role}_mission")
    if value is None:
        own = lab / f"{role.upper()}_MISSION.md"
        if own.is_file():
            return own.read_text()
        key, value = "mission_file", cfg.agents.mission_file
    if not value:
        return ""
    path = lab / value
    if not path.is_file():
        raise AgentError(
            f"[agents] {key} = {value!r} but {path} does not exist: write it or remove the key"
        )
    return path.read_text()


def gather(
    cfg: Config,
    lab: Path,
    db: Path,
    *,
    trials_left: int | None,
    deadline: float | None,
    sigma: float,
    in_flight: list[dict],
    stalled: str | None = None,
) -> dict[str, Any]:
    """The evidence of this moment, from the store: what `render` turns into the prompt.
    The held-out test run is no part of it (not the last trial, the leaderboard nor the
    storyline), nor is its test metric: nothing that decides may see the test."""
    with read.connect(db) as conn:
        base, last = read.baseline(conn), read.last_trial(conn)
        story = read.storyline(db, 8, held_out=False) if stalled else []
        todos, pad = read.todo_focus(conn), read.workpad_tail(conn)
        mentor = read.workpad_tail(conn, 800, mentor=True)
        priorities = signals.compute(conn, todos["open"])
        papers = last_research(conn)
    budget = []
    if trials_left is not None:
        budget.append(f"{trials_left} trial(s) left")
    if deadline:
        budget.append(f"{(deadline - time.time()) / 60:.0f} minute(s) left")

    def clamps(knobs: dict[str, Any]) -> list[str]:
        return [
            f"- {name}: "
            + (
                f"one of {k.choices}"
                if k.choices is not None
                else f"{k.kind} in [{k.low}, {k.high}]" + (" (log scale)" if k.log else "")
            )
            + f" (default {k.default!r})"
            for name, k in knobs.items()
        ]

    knobs = clamps(cfg.search)
    spec = [f"{cfg.trial.spec} (JSON; nested objects by dotted names):", *clamps(cfg.spec)]
    return {
        "brief": (lab / cfg.lab.brief).read_text(),
        "baseline": base,
        "threshold": ratchet.threshold(cfg, sigma),  # the screen against a one-run best
        "budget": ", ".join(budget) or "no limit",
        "knobs": knobs,
        "editable": cfg.editable_files,
        "spec": spec if cfg.trial.spec else [],
        "generated": cfg.trial.generated,
        "leaderboard": ranking.leaderboard(db, cfg.objective.direction, 5),
        "last": last,
        "in_flight": in_flight,
        "todos": todos,
        "workpad": pad,
        "mentor": mentor,
        "stalled": stalled,
        "storyline": story,
        "signals": priorities,
        "papers": papers,
    }


PAPERS_SHOWN = 5  # papers of the last research shown in the context
PAPER_CHARS = 240  # one paper's line


def last_research(conn: Any) -> dict[str, Any] | None:
    """The newest research's query and its top papers, as compact lines."""
    found = queries.events(conn, ("research_done",))
    if not found:
        return None
    data = found[-1]["data"] or {}
    keys = [str(k) for k in (data.get("keys") or [])][:PAPERS_SHOWN]
    cached = queries.papers(conn, keys)
    lines = []
    for key in keys:
        p = cached.get(key) or {}
        authors = p.get("authors") or []
        who = (str(authors[0]) + (" et al." if len(authors) > 1 else "")) if authors else ""
        abstract = str(p.get("abstract") or "").split(". ")[0]
        line = f"- {key}: {p.get('title') or '?'} ({p.get('year') or 'n.d.'}) {who}"
        lines.append((line + (f" — {abstract}" if abstract else ""))[:PAPER_CHARS])
    return {"query": str(data.get("query") or "")[:300], "lines": lines,
            "notes": [str(n)[:200] for n in (data.get("notes") or [])][:3]}  # fmt: skip


def brief(text: str) -> str:
    """The brief under one heading: its own first heading becomes "# Brief: …" (a brief
    that starts "# Brief" is not headed twice)."""
    text = text.strip()
    first, _, rest = text.partition("\n")
    if not first.startswith("# "):
        return f"# Brief\n{text}"
    title = first[2:].strip()
    if title.lower().rstrip(":") == "brief":
        return f"# Brief\n{rest.strip()}"
    return f"# Brief: {title}\n{rest.strip()}"


def render(ctx: dict[str, Any]) -> str:
    """Markdown the worker reads each cycle (the loop fills `ctx`)."""
    obj = ctx["objective"]
    out = [
        f"{brief(ctx.get('brief', ''))}\n",
        f"# Objective\n{obj['direction']} `{obj['metric']}`"
        + (f" (target {obj['target']})" if obj.get("target") is not None else ""),
    ]
    base = ctx.get("baseline")
    if base:
        out.append(
            f"Baseline {fmt.value(base['objective'])} ± {fmt.value(base['sigma'])} over "
            f"{base['n']} seeds. A trial that beats the best's mean by more than "
            f"{fmt.value(ctx.get('threshold', 0.0))} is re-run on new seeds and kept only if "
            "their mean still wins beyond the noise: aim for real gains, not lucky seeds."
        )
    best = ctx.get("best")
    if best:
        out.append(
            f"Best so far: trial {best['trial']} = {fmt.value(best['objective'])} with "
            f"params {json.dumps(best['params'])}. Your params override these."
        )
    out.append(f"\n# Budget\n{ctx.get('budget', 'no limit')}")
    if ctx.get("finishup"):
        out.append(f"Finish-up: {ctx['finishup']}")
    if ctx.get("knobs"):
        out.append("\n# Parameters you may set (the clamps)\n" + "\n".join(ctx["knobs"]))
    if ctx.get("editable"):
        out.append(f"\n# Files you may edit\n{', '.join(ctx['editable'])}")
    if ctx.get("spec"):
        out.append(
            "\n# Training spec fields (out-of-range values are clamped; unknown fields "
            "rejected)\n" + "\n".join(ctx["spec"])
        )
    if ctx.get("generated"):
        out.append(
            f"\n# New modules you may write: {', '.join(ctx['generated'])}\n"
            "Each is smoke-checked before use: aug_*.py defines build() -> callable mapping a "
            "float tensor batch to the same shape (never ToTensor); model_*.py defines "
            "build(num_classes) -> torch.nn.Module returning [batch, num_classes] logits."
        )
    board = ctx.get("leaderboard") or []
    if board:
        out.append("\n# Leaderboard (top)")
        for r in board:
            code = "code changed" if r["commit"] != r["base_commit"] else "base code"
            out.append(
                f"- trial {r['trial']}: {fmt.value(r['objective'])} ({r['verdict']}, "
                f"{code}) {json.dumps(r['params'])} {r.get('hypothesis') or ''}".rstrip()
            )
    last = ctx.get("last")
    if last:
        out.append(
            f"\n# Last trial\ntrial {last['id']} {last['status']}: "
            f"{last.get('reason') or fmt.value(last.get('objective'))}"
        )
        if last["status"] != "succeeded" and last.get("log_tail"):
            tail = redact(last["log_tail"])[-3000:]  # before the cut, which could halve one
            out.append(f"Fix errors first. Log tail:\n```\n{tail}\n```")
    if papers := ctx.get("papers"):
        out.append(f"\n# Papers from your last research ({papers['query']!r})")
        out += papers["lines"] or ["(none found)"]
        out += [f"({note})" for note in papers["notes"]]
        out.append("Cite what you build on by id in `cites`; read_paper(id) gives the abstract.")
    if ctx.get("workpad"):
        out.append(f"\n# Workpad (latest)\n{ctx['workpad']}")
    if ctx.get("mentor"):
        out.append(f"\n# Mentor notes (latest)\n{ctx['mentor']}")
    todos = ctx.get("todos") or {}
    if todos.get("open"):
        out.append(f"\n# Open TODOs: {todos['open']} (oldest and newest; resolve by id)")
        out += [f"- #{t['id']} ({t['author']}) {t['text']}" for t in todos["focus"]]
    out += signals.render(ctx.get("signals") or {})
    if ctx.get("stalled"):  # the storyline is backup context, shown only when stuck
        out.append(f"\n# Stalled: {ctx['stalled']}\nRecent storyline:")
        out += [f"- {line}" for line in ctx.get("storyline") or []]
    if ctx.get("in_flight"):
        out += render_in_flight(ctx["in_flight"])
    out.append("\nDecide the next step. Use the tools to read the code before editing it.")
    return redact("\n".join(out))


MAX_PARAMS_CHARS = 400  # a running trial's parameters as shown


def render_in_flight(flights: list[Any]) -> list[str]:
    """The trials running now, each with its hypothesis, parameters and change (what the
    loop's `inflight.describe` gathered); the worker is told not to propose them again."""
    out = [
        "\n# Running now (do not propose the same change or parameters again: they are "
        "being tried; a plan must differ from each)"
    ]
    for f in flights:
        if not isinstance(f, dict):  # a bare trial id
            out.append(f"- trial {f}")
            continue
        head = f"- trial {f.get('trial')} ({f.get('kind', 'trial')})"
        out.append(head + (f": {f['hypothesis']}" if f.get("hypothesis") else ""))
        if "params" in f:
            out.append(f"  params {json.dumps(f['params'])[:MAX_PARAMS_CHARS]}")
        if "changes" in f:
            changed = ", ".join(
                f"{c['file']} (+{c['added']} -{c['removed']})" if c["added"] else c["file"]
                for c in f["changes"]
            )
            out.append(f"  changes {changed}" if changed else "  no code change")
        if f.get("diff"):
            out.append(f"```diff\n{f['diff']}\n```")
    return out
