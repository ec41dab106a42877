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

            from nightlab import UserError
            from nightlab.lab.api import Lab

            try:
                st = Lab(rest[0] if rest else ".").status()
            except (UserError, FileNotFoundError) as exc:
                sys.stderr.write(f"error: {exc}\n")
                raise SystemExit(getattr(exc, "exit_code", 2)) from None
            sys.stdout.write(json.dumps(st) + "\n")
            return
    from nightlab.lab.cli import app

    app()


if __name__ == "__main__":
    main()
