"""What `pip install nightlab` costs: site-packages size and package count of fresh venvs.

    python3 bench/install_size.py                  # before (a924916's base), base, [all]
    python3 bench/install_size.py --keep /tmp/sizes  # keep the venvs (e.g. to try the base)

Each install goes into its own `python3 -m venv` in a temporary folder (pip's own files are
not counted). "before" is the base install of commit a924916, when the LLM stack, submitit,
FastAPI and Apprise were required; "base" and "all" are this working tree, plain and with
`[all]`. None may pull torch: a row that did says so, and the script exits 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE = "a924916"  # the last commit whose base install held every optional feature
NOT_COUNTED = {"pip"}  # what `python3 -m venv` brings, before any install


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def measure(venv: Path) -> tuple[float, list[str]]:
    """Megabytes under site-packages (pip's own files left out) and the distributions."""
    site = site_packages(venv)
    dists = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
    skip: set[Path] = set()
    for info in site.glob("*.dist-info"):
        if info.name.split("-")[0] in NOT_COUNTED:
            listed = (info / "RECORD").read_text().splitlines()
            skip |= {(site / line.split(",")[0]).resolve() for line in listed}
    total = sum(
        p.lstat().st_size
        for p in site.rglob("*")
        if p.is_file() and not p.is_symlink() and p.resolve() not in skip
    )
    return total / 1e6, [d for d in dists if d not in NOT_COUNTED]


def install(venv: Path, target: str) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "install", "-q", target], capture_output=True, text=True)
    if done.returncode:  # pip's warnings about the mirror are noise, its error is not
        sys.exit(f"pip install {target} failed:\n{done.stdout}{done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="make the venvs here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nightlab-size-") as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        old = where / "before-src"
        old.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BEFORE], check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        rows = []
        for name, target in [(f"before ({BEFORE}, base)", str(old)), ("base", str(REPO)),
                             ("all", f"{REPO}[all]")]:  # fmt: skip
            venv = where / name.split()[0]
            print(f"installing {name}: pip install {target}", file=sys.stderr, flush=True)
            install(venv, target)
            rows.append((name, *measure(venv)))
    print("\n| install | site-packages (MB) | packages | torch |\n|---|---:|---:|---|")
    for name, mb, dists in rows:
        print(f"| {name} | {mb:.0f} | {len(dists)} | {'YES' if 'torch' in dists else 'no'} |")
    before, base, everything = (set(r[2]) for r in rows)
    print(f"\nno longer in the base: {', '.join(sorted(before - base))}")
    print(f"\nonly in [all]: {', '.join(sorted(everything - base))}")
    return 1 if any("torch" in r[2] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
