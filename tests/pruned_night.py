"""Labs whose trial prints a falling loss curve, for the tests of pruning (tests/nights/
test_pruning.py) and of how a pruned trial is shown (report, dashboard, MLflow): the curve
lab, a replay decision, and one real night with a pruned trial, run once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import build_lab, rows

# loss falls as 1/(step+1), shifted up by `offset`; `pause` seconds between steps
CURVE = """
import json, os, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
seed = int(os.environ["NIGHTLAB_SEED"])
for step in range(int(p["steps"])):
    loss = 1.0 / (step + 1) + p["offset"] + 0.001 * (seed % 10)
    print(f"step={step} loss={loss:.6f}", flush=True)
    time.sleep(p["pause"])
"""

FINAL_ONLY = """
import json, os, time
p = json.load(open(os.environ["NIGHTLAB_PARAMS"]))
time.sleep(p["pause"] * p["steps"])
print(f"loss={1.0 + p['offset']}", flush=True)
"""

KNOBS = """
[search.offset]
low = 0.0
high = 10.0
default = 0.0

[search.pause]
low = 0.0
high = 2.0
default = 0.02

[search.steps]
low = 1
high = 100
default = 20
"""


def curve_lab(path, decisions, *, trial=CURVE, pruning="", confirm_runs=0, max_trials=None,
              tracking=False):
    lab = build_lab(
        path, trial=trial, decisions=decisions, confirm_runs=confirm_runs,
        max_trials=max_trials or 3 + len(decisions), toml_extra=pruning, tracking=tracking,
    )  # fmt: skip
    toml = (lab / "nightlab.toml").read_text()
    toml = toml.replace('metric = "score"', 'metric = "loss"')
    toml = toml.replace('direction = "maximize"', 'direction = "minimize"')
    start = toml.index("[search.boost]")
    end = toml.index("[budget]")
    (lab / "nightlab.toml").write_text(toml[:start] + KNOBS + toml[end:])
    return lab


def run(params: dict, why: str = "a setting this night has not tried yet") -> dict:
    return {"action": "run", "rationale": f"{why}: it tells us how the curve moves with it",
            "hypothesis": f"{why} changes the loss", "params": params}


def trials(lab: Path) -> list[Any]:
    return rows(lab, "SELECT * FROM trials ORDER BY id")


HOSTILE = "<script>alert('p')</script><img src=x onerror=alert(1)>"
HOPELESS = {"offset": 3.0, "pause": 0.5}  # 20 steps, half a second each: pruned at step 2
_NIGHTS: dict[str, Path] = {}


def pruned_night(root: Path) -> Path:
    """A real night (tracking on): three baseline repeats, a hopeless trial (pruned, with a
    hostile hypothesis), a good one run to its end, and a second hopeless one (pruned).
    Run once per test session (`root` of the first caller), then shared."""
    if "lab" not in _NIGHTS:
        from nightlab import Lab

        lab = curve_lab(
            root / "lab",
            [
                {**run(HOPELESS, "a hopeless setting"), "hypothesis": HOSTILE},
                run({"offset": 0.0, "pause": 0.3}, "a good setting"),  # 6 s: a full run
                run({**HOPELESS, "offset": 4.0}, "another hopeless setting"),
            ],
            tracking=True,
        )
        final = Lab(lab).run(report=lambda line: None)
        assert final["state"] == "finished", final
        _NIGHTS["lab"] = lab
    return _NIGHTS["lab"]
