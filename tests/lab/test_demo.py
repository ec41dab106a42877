"""`make demo`'s night, run as the Makefile runs it: the digits example starts from an honestly
under-tuned default (its IDEA.md says so) and a 12-trial night must find, confirm on new
seeds and report a real improvement."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import cli, rows, status

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def demo_arguments() -> list[str]:
    """The options `make demo` passes to `nightlab run` (read from the Makefile: no drift)."""
    text = (ROOT / "Makefile").read_text()
    line = re.search(r"nightlab run \.demo/digits (.+)", text)
    assert line, "the Makefile's demo target no longer runs .demo/digits"
    return shlex.split(line.group(1))


def test_the_demo_night_ends_with_a_confirmed_improvement(tmp_path):
    lab = tmp_path / "digits"
    shutil.copytree(ROOT / "examples" / "digits", lab)
    assert "under-tuned" in (lab / "IDEA.md").read_text()
    cli("run", str(lab), *demo_arguments(), timeout=600)

    st = status(lab)
    assert st["state"] == "finished" and st["end_reason"] == "finish-up complete", st
    base, best = st["baseline"], st["best"]
    assert best["trial"] not in base["trials"]  # a worker's change is the best
    # confirmed on new seeds, its selection run left out; far beyond the baseline's noise
    assert best["n"] >= 2 and best["confirmed_mean"] == best["objective"]
    assert best["confirmed_mean"] - base["objective"] > max(0.1, 3 * base["sigma"]), st
    kept = rows(lab, "SELECT judgement FROM trials WHERE verdict = 'kept'")
    judgements = [json.loads(j) for (j,) in kept]
    assert judgements and all(j["stage"] == "confirm" and j["n"] >= 2 for j in judgements)
    assert all(j["improvement"] > j["threshold"] > 0 for j in judgements)

    (report,) = (lab / ".nightlab" / "reports").glob("*/final_paper_report.md")
    summary = report.read_text().split("## Approach")[0]
    assert "Success" in summary and "raised val_acc from" in summary
    assert f"(confirmed, n={best['n']}" in summary
