"""Generated modules: smoke-checked in a subprocess before any trial may use them."""

from __future__ import annotations

import json

import pytest

from nightlab import Lab
from nightlab.config import load_config
from nightlab.trials.smoke import vet
from nightlab.trials.workspace import Workspace

from conftest import rows

pytestmark = pytest.mark.slow

GENERATED = """
generated = ["generated/aug_*.py", "generated/model_*.py", "generated/util_*.py"]

[smoke]
input_shape = [1, 8, 8]
num_classes = 10
batch = 4
timeout_seconds = 8
"""

GOOD_AUG = """
import torch

class Jitter:
    def __call__(self, x):
        return x + 0.01 * torch.randn_like(x)

def build():
    return Jitter()
"""

GOOD_MODEL = """
from torch import nn

def build(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))
"""

MODULES = {
    "generated/aug_jitter.py": (GOOD_AUG, None),
    "generated/model_mlp.py": (GOOD_MODEL, None),
    "generated/util_ok.py": ("VALUE = 3\n", None),
    "generated/aug_totensor.py": (
        "from torchvision import transforms as T\n"
        "def build():\n    return T.Compose([T.ToTensor()])\n",
        "uses ToTensor",
    ),
    "generated/aug_crop.py": (
        "def build():\n    return lambda x: x[..., 1:, 1:]\n",
        "a batch of shape [4, 1, 8, 8] gave [4, 1, 7, 7]; batch must have shape [4, 1, 8, 8]",
    ),
    "generated/model_wide.py": (
        GOOD_MODEL.replace("num_classes))", "num_classes + 1))"),
        "gave [4, 11]; logits must have shape [4, 10]",
    ),
    "generated/model_nan.py": (
        "import torch\nfrom torch import nn\n"
        "class M(nn.Module):\n    def forward(self, x):\n"
        "        return torch.full((x.shape[0], 10), float('nan'))\n"
        "def build(num_classes):\n    return M()\n",
        "NaN or inf",
    ),
    "generated/model_nobuild.py": ("from torch import nn\nNet = nn.Linear\n", "no build()"),
    "generated/util_broken.py": ("import no_such_module_here\n", "ModuleNotFoundError"),
    "generated/util_slow.py": ("import time\ntime.sleep(60)\n", "ran past 8 s"),
    # a sibling imported relatively, as the trial would import it
    "generated/util_layers.py": ("from torch import nn\nHIDDEN = 32\n", None),
    "generated/model_rel.py": (
        "from torch import nn\nfrom .util_layers import HIDDEN\n"
        "def build(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, HIDDEN), nn.Linear(HIDDEN, "
        "num_classes))\n",
        None,
    ),
    # the lab's code is importable, nightlab's own modules are not (there is no config.py)
    "generated/util_cfg.py": ("import config\n", "No module named 'config'"),
}


def test_each_generated_module_passes_or_is_rejected_with_its_error(make_lab):
    lab = make_lab(trial_extra=GENERATED)
    for path, (source, _) in MODULES.items():
        (lab / path).parent.mkdir(exist_ok=True)
        (lab / path).write_text(source)
    cfg = load_config(lab)
    (lab / ".nightlab").mkdir()
    ws = Workspace(lab, lab / ".nightlab", "tiny")
    commit = ws.snapshot()
    reasons = vet(cfg, lab, ws, commit, list(MODULES))
    for path, (_, expected) in MODULES.items():
        mine = [r for r in reasons if r.startswith(f"generated module {path} ")]
        if expected is None:
            assert mine == [], mine
        else:
            assert len(mine) == 1 and expected in mine[0], (path, mine)
    assert not list((lab / ".nightlab").glob("smoke-*"))  # the scratch copies are gone


def test_a_night_uses_a_good_generated_model_and_never_runs_a_bad_one(make_lab):
    uses = (
        "import importlib, json, os\n"
        "p = json.load(open(os.environ['NIGHTLAB_PARAMS']))\n"
        "if os.path.exists('generated/model_mlp.py'):\n"
        "    import torch\n"
        "    m = importlib.import_module('generated.model_mlp').build(num_classes=10)\n"
        "    assert m(torch.zeros(2, 1, 8, 8)).shape == (2, 10)\n"
        "    print('used generated model', flush=True)\n"
        "seed = int(os.environ['NIGHTLAB_SEED'])\n"
        "bonus = 1.0 if os.path.exists('generated/model_mlp.py') else 0.0\n"
        'print(f"score={1.0 + bonus + 0.01 * ((seed * 7) % 3 - 1)}", flush=True)\n'
    )

    def write(path: str, source: str, why: str) -> dict:
        edit = {"file": path, "search": "", "replace": source}
        return {"action": "run", "rationale": why, "edits": [edit]}

    decisions = [
        write("generated/model_wide.py", MODULES["generated/model_wide.py"][0], "a wider head"),
        write("generated/model_mlp.py", GOOD_MODEL, "an MLP head instead of the CNN"),
    ]
    lab = make_lab(decisions=decisions, trial_extra=GENERATED, max_trials=10)
    (lab / "train.py").write_text(uses)
    (lab / "generated").mkdir()
    (lab / "generated" / "__init__.py").write_text("")
    Lab(lab).run(report=lambda line: None)

    trials = rows(lab, "SELECT * FROM trials WHERE kind='trial' ORDER BY id")
    assert len(trials) == 1 and trials[0]["verdict"] == "kept"
    out = (lab / ".nightlab/trials" / str(trials[0]["id"]) / "stdout.log").read_text()
    assert "used generated model" in out
    rejected = [json.loads(r[0]) for r in rows(lab, "SELECT reasons FROM decisions WHERE "
                                                    "accepted=0")]  # fmt: skip
    assert any(
        "generated module generated/model_wide.py failed its smoke check (model)" in r
        and "logits must have shape [4, 10]" in r
        for reasons in rejected
        for r in reasons
    ), rejected


def test_a_check_cut_short_by_the_night_stopping_is_not_called_a_failure(make_lab):
    """The loop detached (a Slurm requeue) or stopped mid-check: the record said the module
    "failed its smoke check", and the resumed night's worker read that as a verdict."""
    lab = make_lab(trial_extra=GENERATED)
    (lab / "generated").mkdir()
    (lab / "generated" / "util_slow.py").write_text("import time\ntime.sleep(60)\n")
    cfg = load_config(lab)
    (lab / ".nightlab").mkdir()
    ws = Workspace(lab, lab / ".nightlab", "tiny")
    ticks = iter([True] * 10)  # the night stops after ~1 s of the check
    [reason] = vet(cfg, lab, ws, ws.snapshot(), ["generated/util_slow.py"],
                   tick=lambda: next(ticks, False))  # fmt: skip
    assert "failed" not in reason
    assert "cut short, the night is stopping; not judged" in reason
    assert not list((lab / ".nightlab").glob("smoke-*"))
