"""The smoke check of one generated module, run in a subprocess of the training Python,
from a copy of this file placed at the root of a copy of the code to be run (so the lab's
own modules, not nightlab's, are importable): `python SCRIPT KIND FILE OPTIONS_JSON`.

* `augmentation` (files named `aug_*`/`augment*`): `build()` returns a callable that maps a
  float tensor batch `(batch, *input_shape)` to a finite tensor of the same shape. It must
  not include `ToTensor` (the runner converts images to tensors once; a second conversion
  breaks on tensors).
* `model` (files named `model_*`): `build(num_classes=N)` returns a torch module that maps
  such a batch to finite logits of shape `(batch, N)`.
* anything else: the module must import.

Exit 0 and one `ok: …` line when the module passes; exit 1 with the reason on the last
line of stderr when it does not.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import sys
import traceback
from pathlib import Path
from typing import Any


class SmokeFailure(Exception):
    pass


def kind_of(path: str) -> str:
    name = Path(path).name
    if name.startswith(("aug_", "augment")):
        return "augmentation"
    if name.startswith("model_"):
        return "model"
    return "module"


def _mentions_totensor(source: str) -> bool:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "ToTensor":
            return True
        if isinstance(node, ast.Attribute) and node.attr == "ToTensor":
            return True
        if isinstance(node, ast.alias) and node.name.split(".")[-1] == "ToTensor":
            return True
    return False


def _load(path: Path) -> Any:
    """Import the module as the trial would: by its dotted name from the code's root (so its
    relative imports work), or from its file where the path is not a module name."""
    dotted = ".".join(path.with_suffix("").parts)
    if all(part.isidentifier() for part in dotted.split(".")):
        return importlib.import_module(dotted)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SmokeFailure(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _build(module: Any, path: str, **kwargs: Any) -> Any:
    build = getattr(module, "build", None)
    if not callable(build):
        raise SmokeFailure(f"{path} defines no build() function")
    accepted = inspect.signature(build).parameters
    return build(**{k: v for k, v in kwargs.items() if k in accepted})


def check(kind: str, path: str, opts: dict[str, Any]) -> str:
    """Check one module; returns what was verified or raises SmokeFailure."""
    source = Path(path).read_text()
    if kind == "augmentation" and _mentions_totensor(source):
        raise SmokeFailure(
            f"{path} uses ToTensor: a generated augmentation works on tensors (the runner "
            "converts images once); remove ToTensor"
        )
    module = _load(Path(path))
    if kind == "module":
        return f"{path} imports"
    import torch

    torch.manual_seed(0)
    shape = (int(opts["batch"]), *map(int, opts["input_shape"]))
    x = torch.rand(shape)
    with torch.no_grad():
        if kind == "augmentation":
            aug = _build(module, path, input_shape=tuple(opts["input_shape"]))
            if not callable(aug):
                raise SmokeFailure(f"{path}: build() returned {type(aug).__name__}, not callable")
            y = aug(x.clone())
            want = tuple(shape)
        else:
            n = int(opts["num_classes"])
            model = _build(module, path, num_classes=n, input_shape=tuple(opts["input_shape"]))
            if not isinstance(model, torch.nn.Module):
                raise SmokeFailure(
                    f"{path}: build() returned {type(model).__name__}, not a torch.nn.Module"
                )
            model.eval()
            y = model(x)
            want = (shape[0], n)
    if not isinstance(y, torch.Tensor):
        raise SmokeFailure(f"{path}: returned {type(y).__name__} for a tensor batch, not a tensor")
    if tuple(y.shape) != want:
        what = "batch" if kind == "augmentation" else "logits"
        raise SmokeFailure(
            f"{path}: a batch of shape {list(shape)} gave {list(y.shape)}; {what} must have "
            f"shape {list(want)}"
        )
    if not torch.isfinite(y).all():
        raise SmokeFailure(f"{path}: the output holds NaN or inf for a random batch")
    return f"{path}: {kind} maps {list(shape)} to {list(want)}"


def main() -> int:
    kind, path, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    try:
        print(f"ok: {check(kind, path, opts)}", flush=True)
    except SmokeFailure as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except Exception as exc:  # the module's own error is the reason
        traceback.print_exc()
        print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
