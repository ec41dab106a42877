"""`nightlab` / `python -m nightlab`: the command line entry point."""

from __future__ import annotations

import sys


def _leaderboard_json(argv: list[str]) -> tuple[str, int] | None:
    """(lab, top) when `argv` is `leaderboard [LAB] --json [--top N]`, else None (Typer
    then parses it, and explains a mistake)."""
    lab, top, rest = None, 10, [a for a in argv[1:] if a != "--json"]
    while rest:
        arg = rest.pop(0)
        if arg.startswith("--top"):
            value = arg[6:] if arg.startswith("--top=") else rest.pop(0) if rest else ""
            if arg not in ("--top", f"--top={value}") or not value.isdigit() or int(value) < 1:
                return None
            top = int(value)
        elif arg.startswith("-") or lab is not None:
            return None
        else:
            lab = arg
    return lab or ".", top


def _answer(fn: object) -> None:
    """Print what `fn()` returns as one JSON line; a user's mistake as one error line."""
    import json

    from nightlab import UserError

    try:
        out = fn()  # type: ignore[operator]
    except (UserError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    sys.stdout.write(json.dumps(out) + "\n")


def main() -> None:
    argv = sys.argv[1:]
    if argv in (["--version"], ["-V"]):  # without building the Typer app
        from nightlab import version

        sys.stdout.write(f"nightlab {version()}\n")
        return
    # `leaderboard --json` too: what a dashboard or a script reads of a big lab
    if argv[:1] == ["leaderboard"] and "--json" in argv and (asked := _leaderboard_json(argv)):
        from nightlab.lab.api import Lab

        def board() -> list[dict]:
            target = Lab(asked[0])
            rows = target.leaderboard(asked[1])
            try:  # as `nightlab.lab.views.metric_of`, without importing Rich
                metric: str | None = str(target._quick("objective", "metric"))
            except Exception:
                metric = None
            return [{**r, "metric": metric} for r in rows]

        _answer(board)
        return
    # `status --json` is what scripts and dashboards poll. Answer it without building the
    # Typer app (Typer and pydantic cost ~0.3 s to import), so it stays fast on big labs.
    if argv[:1] == ["status"] and "--json" in argv and len(argv) <= 3:
        rest = [a for a in argv[1:] if a != "--json"]
        if not any(a.startswith("-") for a in rest):
            from nightlab.lab.api import Lab

            _answer(lambda: Lab(rest[0] if rest else ".").status())
            return
    from nightlab.lab.cli import app

    app()


if __name__ == "__main__":
    main()
