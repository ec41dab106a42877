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
            from nightlab.errors import USER_ERRORS

            try:
                st = Lab(rest[0] if rest else ".").status()
            except Exception as exc:
                if type(exc).__name__ not in USER_ERRORS:
                    raise
                sys.stderr.write(f"error: {exc}\n")
                raise SystemExit(USER_ERRORS[type(exc).__name__]) from None
            sys.stdout.write(json.dumps(st) + "\n")
            return
    from nightlab.cli import app

    app()


if __name__ == "__main__":
    main()
