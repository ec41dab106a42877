"""`final_leaderboard_top{K}.json` / `.md`: the best candidates of the night — the confirmed
ones first, by their confirmed mean (runs on new seeds, never the selection run), then the
unconfirmed single runs — with the ratchet's figures (validated against
`leaderboard.schema.json`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nightlab.report import verdicts
from nightlab.report.candidates import Candidate, changed_params, describe_diff, params_text
from nightlab.report.data import Night
from nightlab.report.doc import md_table
from nightlab.store import fmt
from nightlab.store.files import write_atomic, write_json
from nightlab.store.redact import redact, redact_data

SCHEMA_PATH = Path(__file__).with_name("leaderboard.schema.json")
SCHEMA_VERSION = 2  # 2: confirmed means, selection runs, verdict figures, noise


def schema() -> dict[str, Any]:
    """The JSON Schema every leaderboard file satisfies."""
    return json.loads(SCHEMA_PATH.read_text())


def _short(text: str | None, n: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def entry(c: Candidate) -> dict[str, Any]:
    first = c.first
    return {
        "rank": c.rank,
        "trial": first["id"],
        "trials": c.ids,
        "kind": c.kind,
        "verdict": c.verdict,
        "final_pick": c.final_pick,
        "confirmed": c.confirmed,
        "objective_mean": c.mean,
        "objective_sd": c.sd,
        "confirmed_mean": c.mean if c.confirmed else None,
        "n": c.n,
        "selection": c.selection,
        "n_seeds": len(c.seeds),
        "n_runs": len(c.scored),
        "seeds": c.seeds,
        "objectives": c.values,
        "judgement": c.judgement,
        "params": first["params"],
        "dimension": first["dimension"],
        "hypothesis": first["hypothesis"] or "",
        "commit": first["commit"],
        "diff": c.diff,
        "mlflow_run_id": first["mlflow_run_id"] or (c.mlflow_run_ids or [None])[0],
        "mlflow_run_ids": c.mlflow_run_ids,
        "test": None if c.test is None else {"metric": c.test["metric"], "value": c.test["value"]},
    }


def build(night: Night, top: list[Candidate], top_k: int, n_candidates: int) -> dict[str, Any]:
    """The leaderboard document (plain JSON data)."""
    base = night.baseline
    pick = next((c for c in top if c.final_pick), None)
    return {
        "schema_version": SCHEMA_VERSION,
        "lab": night.cfg.lab.name,
        "night_id": night.night_id,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metric": night.metric,
        "direction": night.cfg.objective.direction,
        "top_k": top_k,
        "n_candidates": n_candidates,
        "baseline": None
        if base is None
        else {
            "objective_mean": base["objective"],
            "objective_sd": base["sigma"] if base["n"] > 1 else None,
            "n_seeds": base["n"],
            "trials": base["trials"],
        },
        "final_pick": None if pick is None else pick.first["id"],
        "noise": {
            "sigma": night.noise.sigma if night.noise.df else None,
            "sd": night.noise.sd if night.noise.df else None,
            "df": night.noise.df,
            "confidence": night.cfg.ratchet.sigma_confidence,
        },
        "ratchet": {
            **verdicts.counts(night),
            "false_keeps_avoided": len(night.false_keeps_avoided()),
            **{f"confirmation_{k}": v for k, v in night.confirmation_cost().items()},
        },
        "candidates": [entry(c) for c in top],
    }


def to_markdown(night: Night, board: dict[str, Any], top: list[Candidate]) -> str:
    """The same leaderboard as a Markdown table."""
    k, metric = board["top_k"], board["metric"]
    lines = [
        f"# Leaderboard top {k}: {board['lab']}",
        "",
        f"Night `{board['night_id']}` · {metric} ({board['direction']}) · "
        f"{board['n_candidates']} candidate(s): the confirmed ones ranked by their confirmed "
        f"{metric} (the mean of their runs on new seeds, never the selection run that proposed "
        "them), then the unconfirmed single runs (same code and parameters = one candidate).",
        "",
    ]
    if not top:
        return "\n".join(lines + ["No trial has succeeded with an objective yet.", ""])
    rows = []
    for c in top:
        e = entry(c)
        params = changed_params(night, e["params"])
        shown = params_text(params) or "defaults"
        mark = " ★" if c.final_pick else ""
        test = "" if c.test is None else f"{c.test['metric']}={fmt.value(c.test['value'])}"
        rows.append(
            [
                f"{c.rank}{mark}",
                ", ".join(str(i) for i in c.ids[:6]) + (" …" if len(c.ids) > 6 else ""),
                c.estimate() if c.confirmed else f"{fmt.value(c.mean)} (single run)",
                str(c.n) if c.confirmed else "—",
                c.selection_text(),
                c.verdict or "—",
                e["dimension"] or ("baseline" if c.kind == "baseline" else "—"),
                shown,
                describe_diff(c.diff),
                _short(e["hypothesis"], 60) or "—",
                test or "—",
                e["mlflow_run_id"] or "—",
                c.links_text(),
            ]
        )
    header = [
        "rank", "trials", f"{metric} confirmed mean ± sd", "n", "selection run", "verdict",
        "dimension", "params (vs defaults)", "code vs night start", "hypothesis", "test",
        "MLflow run", "links",
    ]  # fmt: skip
    lines.append(md_table(header, rows))
    lines += ["", "★ the final pick (the code nightlab hands over); n: runs on new seeds in the "
              "confirmed mean; (single run): no run but the one that proposed it."]  # fmt: skip
    return "\n".join(lines) + "\n"


def write(out: Path, night: Night, top: list[Candidate], top_k: int, n_all: int) -> dict:
    """Write both files into `out`; returns the JSON document."""
    board = redact_data(build(night, top, top_k, n_all))
    write_json(out / f"final_leaderboard_top{top_k}.json", board, newline=True)
    write_atomic(out / f"final_leaderboard_top{top_k}.md", redact(to_markdown(night, board, top)))
    return board
