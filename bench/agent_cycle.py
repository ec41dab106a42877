"""What nightlab adds to each coding-agent cycle, the agent's own time left out.

A night with `worker = "command:bench"`: an agent that edits train.py at once and writes its
decision (a real subprocess, in the default sandbox). Timed in the loop itself: the context
the worker reads (gathered from the store), the prompt and the scratch copy before the
agent runs and the collection after it (`decide` minus the agent's process), and admission
(gate, commit, rebase, twin check). Run by bench.py, or alone:

    .venv/bin/python bench/agent_cycle.py [--cycles N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

AGENT = """import json, os, time, pathlib
code = pathlib.Path("train.py").read_text()
n = time.time_ns()  # new code each time: the comment is not kept, the best stays the same
pathlib.Path("train.py").write_text(code + f"# step {n}\\n")
pathlib.Path(os.environ["NIGHTLAB_DECISION_FILE"]).write_text(json.dumps(
    {"action": "run", "rationale": f"step {n}: a comment line changes the code, not the score",
     "hypothesis": "the score stays at 1.0: the trial is new code all the same"}))
"""
TOML = """[lab]
name = "agent-bench"
brief = "IDEA.md"

[objective]
metric = "score"
direction = "maximize"

[trial]
command = "python train.py"
budget_seconds = 60
editable = ["train.py"]

[search.x]
low = 0.0
high = 1.0
default = 0.5

[agents]
worker = "command:bench"

[agents.commands.bench]
argv = ["{python}", "{agent}"]

[report]
auto = false

[tracking]
enabled = false
"""


def lab(root: Path) -> Path:
    import subprocess

    lab = root / "agent-cycle"
    lab.mkdir()
    (lab / "train.py").write_text('print("score=1.0")\n')
    (lab / "IDEA.md").write_text("# Bench\nMaximise score.\n")
    (root / "agent.py").write_text(AGENT)
    (lab / "nightlab.toml").write_text(
        TOML.format(python=sys.executable, agent=root / "agent.py")
    )
    subprocess.run(["git", "init", "-q"], cwd=lab, check=True)
    return lab


def measure(root: Path, cycles: int) -> dict[str, list[float]]:
    """Seconds per cycle: context, prompt+collect, admission, their sum, the agent's own."""
    from nightlab import Lab
    from nightlab.agents.command import CommandWorker
    from nightlab.loop.cycle import Cycles
    from nightlab.trials import process

    times: dict[str, list[float]] = {"context": [], "decide": [], "agent": [], "admit": []}

    def timing(key: str, fn: Callable[..., Any], when: Callable[..., bool] = lambda *a, **k: True):
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if when(*args, **kwargs):
                    times[key].append(time.perf_counter() - t0)

        return wrapper

    saved = (Cycles.context, Cycles._admit, CommandWorker.decide, process.run)
    Cycles.context = timing("context", Cycles.context, lambda self, full, **k: full)
    Cycles._admit = timing("admit", Cycles._admit)
    CommandWorker.decide = timing("decide", CommandWorker.decide)
    process.run = timing("agent", process.run)  # the factory hands the worker process.run
    try:
        Lab(lab(root)).run(max_trials=cycles + 3, report=lambda line: None)
    finally:
        Cycles.context, Cycles._admit, CommandWorker.decide, process.run = saved
    n = min(len(v) for v in times.values())
    if n < cycles // 2:
        raise SystemExit(f"agent-cycle bench: only {n} cycles ran ({times})")
    ours = [times["decide"][i] - times["agent"][i] for i in range(n)]
    total = [times["context"][i] + ours[i] + times["admit"][i] for i in range(n)]
    return {
        "context": times["context"][:n], "prompt + collect": ours, "admission": times["admit"][:n],
        "total": total, "agent": times["agent"][:n],
    }  # fmt: skip


def rows(root: Path, cycles: int) -> list[tuple[str, str, str, str]]:
    """bench.py's rows: the total per cycle against its target, then its parts."""
    got = measure(root, cycles)
    med = {k: statistics.median(v) for k, v in got.items()}
    p90 = statistics.quantiles(got["total"], n=10)[-1] if len(got["total"]) > 1 else med["total"]
    out = [(
        "coding-agent cycle overhead (context + prompt + collect + gate), agent excluded",
        f"{med['total'] * 1000:.1f} ms (p90 {p90 * 1000:.1f} ms)", "≤ 250 ms",
        "PASS" if med["total"] <= 0.25 else "FAIL",
    )]  # fmt: skip
    for part in ("context", "prompt + collect", "admission", "agent"):
        label = "the agent's own run (not counted)" if part == "agent" else part
        out.append((f"  {label}", f"{med[part] * 1000:.1f} ms", "—", "—"))
    return out


def main() -> None:
    args = sys.argv[1:]
    cycles = int(args[args.index("--cycles") + 1]) if "--cycles" in args else 12
    with tempfile.TemporaryDirectory(prefix="nightlab-agent-bench-") as tmp:
        for row in rows(Path(tmp), cycles):
            print(" | ".join(row))


if __name__ == "__main__":
    main()
