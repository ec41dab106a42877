"""`nightlab` / `python -m nightlab`: the command line entry point."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    # `status --json` is what scripts and dashboards poll. Answer it without building the
    # Typer app (Typer and pydantic cost ~0.3 s to import), so it stays fast on big labs.
    if argv[:1] == ["status"] and "--json" in argv and len(argv) <= 3:
        rest = [a for a in argv[1:] if a != "--json"]
        if not any(a.startswith("-") for a in rest):
            import json

            from nightlab.api import Lab

            sys.stdout.write(json.dumps(Lab(rest[0] if rest else ".").status()) + "\n")
            return
    from nightlab.cli import app

    app()


if __name__ == "__main__":
    main()
