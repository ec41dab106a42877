"""`nightlab init --template`: the templates ship inside the package as real files (a wheel
installed anywhere has them), and each one that is also an example is that example, file
for file (the example is what the README and `make demo` run)."""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

from nightlab.lab import templates

REPO = Path(__file__).resolve().parents[2]
SKIP = {"__pycache__", ".nightlab", "outputs"}


def tracked(folder: Path) -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=folder, capture_output=True, text=True)
    return {line for line in out.stdout.splitlines() if line}


def test_every_template_is_real_files_and_matches_its_example():
    here = Path(templates.__file__).parent
    names = templates.names()
    assert {"minimal", "digits", "lightning-hydra"} <= set(names)
    for name in names:
        template = here / name
        links = [p for p in template.rglob("*") if p.is_symlink()]
        assert not template.is_symlink() and not links, (name, links)
        example = REPO / "examples" / name
        if not example.is_dir():
            continue
        ours = tracked(example)
        theirs = {
            str(p.relative_to(template))
            for p in template.rglob("*")
            if p.is_file() and not SKIP & set(p.relative_to(template).parts)
        }
        assert ours == theirs, (name, ours ^ theirs)
        changed = [f for f in ours if not filecmp.cmp(example / f, template / f, shallow=False)]
        assert not changed, f"examples/{name} and the {name} template differ: {changed}"
