"""`Lab`: the Python API that every front end (the CLI, later the dashboard) calls.

Read-only views (`status`, `leaderboard`, `storyline`) stay light: they need neither
SQLAlchemy nor pydantic, so `nightlab status --json` answers fast on a big lab.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nightlab.lab.errors import LabError
from nightlab.store import ranking, read
from nightlab.store.paths import LabPaths

__all__ = ["Lab", "LabError"]


class Lab:
    def __init__(self, path: str | Path = ".") -> None:
        self.path = Path(path).resolve()
        self.paths = LabPaths(self.path)
        self.state = self.paths.state
        self.db = self.paths.db

    def __repr__(self) -> str:
        return f"Lab({str(self.path)!r})"

    @property
    def config(self) -> Any:
        """nightlab.toml, validated; with `[trial] params = "hydra"` the defaults it leaves
        out are the project's config values the night read (None before the first night)."""
        from nightlab.config import load_config

        cfg = load_config(self.path)
        if cfg.unset_defaults() and self.db.is_file():
            from nightlab.trials.composed import with_kept_defaults

            cfg = with_kept_defaults(cfg, self.db)
        return cfg

    @property
    def name(self) -> str:
        return self._quick("lab", "name")

    def notify_test(self) -> list[tuple[str, str | None]]:
        """Send one test message to every `[notify] urls` entry: per URL, its label (secrets
        masked) and None when it was delivered, else why not."""
        from nightlab.loop import notify

        cfg = self.config
        return notify.test(cfg.notify.urls, cfg.lab.name, self.path)

    def _quick(self, section: str, key: str) -> Any:
        """One value of nightlab.toml without validating it all (views stay fast); a
        missing file is an error, a missing or broken key gets the full explanation."""
        path = self.path / "nightlab.toml"
        if not path.is_file():
            raise LabError(
                f"no nightlab.toml in {self.path}: not a lab (create one with "
                f"`nightlab init {self.path}`, or point to the folder that holds one)"
            )
        try:
            return tomllib.loads(path.read_text())[section][key]
        except (KeyError, TypeError, tomllib.TOMLDecodeError):
            return getattr(getattr(self.config, section), key)  # raises the ConfigError

    # ------------------------------------------------------------------ running
    def run(
        self,
        *,
        worker: str | None = None,
        max_trials: int | None = None,
        hours: float | None = None,
        slots: int | None = None,
        report: Callable[[str], None] | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        finishup_minutes: float | None = None,
        final_rounds: int | None = None,
        top_k: int | None = None,
        finishup_note: str = "",
    ) -> dict[str, Any]:
        """Run the loop in this process until a stop condition; returns the final status.

        The night's human lines (one per event) are INFO records, WARNING where something
        went wrong, on the `nightlab.loop` logger: `logging.basicConfig(level=logging.INFO)`
        shows them. `report`, if given, also receives each line (the older way);
        `progress(ended, max_trials)` is called after every recorded trial.
        `finishup_minutes` makes the last minutes of an `hours`-long night its finish-up
        (see `finish_up`); each of the three finish-up settings left out is nightlab.toml's
        `[budget]` one."""
        from nightlab.loop.loop import Loop

        if hours is not None and hours <= 0:
            raise LabError(f"hours must be more than 0 (got {hours}); leave it out for no limit")
        budget, finish = self.config.budget, None
        if finishup_minutes is None:
            finishup_minutes = budget.finishup_minutes
        if finishup_minutes is not None:
            from nightlab.loop import finish_request

            hours = hours if hours is not None else budget.hours
            if hours is None:
                raise LabError(
                    "--finishup-minutes (or [budget] finishup_minutes) needs the night's "
                    "length: give --run-hours H (or [budget] hours)"
                )
            finish = finish_request.request(
                run_hours=hours, minutes_left=finishup_minutes,
                final_rounds=budget.final_rounds if final_rounds is None else final_rounds,
                top_k=budget.confirm_top if top_k is None else top_k, note=finishup_note,
            )  # fmt: skip

        loop = Loop(
            self.path,
            self.config,
            worker=worker,
            max_trials=max_trials,
            hours=hours,
            slots=slots,
            report=report,
            progress=progress,
            finish=finish,
        )
        return loop.run()

    def start(
        self, *, wait_s: float = 60.0, env: dict[str, str] | None = None, **options: Any
    ) -> int:
        """Run the loop in the background (its output in .nightlab/loop.log); returns its PID.
        `options` become `nightlab run` options (True: a bare flag); `env` is added to its
        environment (a secret such as the dashboard's token goes there, never in argv)."""
        from nightlab.loop import extras

        # fail here, in the caller's terminal, on a bad nightlab.toml or a missing extra
        extras.check(self.config, options.get("worker"))
        current = self.status()
        if current["state"] == "running":
            raise LabError(
                f"{self.name} is already running (PID {current['pid']}); `nightlab stop` it first"
            )
        args = [sys.executable, "-m", "nightlab", "run", str(self.path), *_flags(options)]
        self.state.mkdir(parents=True, exist_ok=True)
        log = self.paths.loop_log
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {}), "NIGHTLAB_PLAIN": "1"},
            )
        deadline = time.time() + wait_s
        while time.time() < deadline:
            if proc.poll() is not None:
                from nightlab.store.files import tail

                lines = tail(log, 15, max_bytes=1 << 20)
                raise LabError("the background loop exited at once:\n" + lines)
            if self.db.is_file():
                st = self.status()
                if st["state"] == "running" and st["pid"] == proc.pid:
                    return proc.pid
            time.sleep(0.1)
        raise LabError(
            f"the background loop (PID {proc.pid}) did not report within {wait_s:g}s; see {log}"
        )

    def start_slurm(self, **options: Any) -> str:
        """`start --slurm` (lab/slurm_loop.py); `options` as for `start`. The job id."""
        from nightlab.lab import slurm_loop

        return slurm_loop.submit(self, _flags(options))

    def stop(self, *, now: bool = False, wait: bool = False, timeout: float = 3600) -> dict:
        """Ask the running loop to stop after its running trials (`now`: kill them too);
        see lab/stopping.py. Returns the status after it."""
        from nightlab.lab.stopping import stop

        return stop(self, now=now, wait=wait, timeout=timeout)

    def extend(self, hours: float) -> dict[str, Any]:
        """Give the running night `hours` more (see lab/extend.py); the loop takes it within
        a heartbeat. Returns the old and new deadline and a summary line."""
        from nightlab.lab.extend import extend

        return extend(self, hours)

    # ------------------------------------------------------------------ finish-up, report
    def finish_up(self, **request: Any) -> dict[str, Any]:
        """Request or schedule the finish-up (see `finish_request.request` for the forms); a
        running loop picks it up within a heartbeat. Returns `finish_up_show()`. With
        `report_now` and no loop running, the report is written at once."""
        from nightlab.loop import finish_request

        budget = self.config.budget  # a broken nightlab.toml fails here, not in the loop
        for key, default in (("final_rounds", budget.final_rounds), ("top_k", budget.confirm_top)):
            if request.get(key) is None:
                request[key] = default
        wanted = finish_request.request(**request)
        self._store_finish(wanted)
        shown = self.finish_up_show()
        if wanted.report_now and self.status()["state"] != "running":
            shown["report"] = str(self.report(top_k=wanted.top_k))
            self._store_finish(wanted.model_copy(update={"phase": "done"}))
            shown = {**self.finish_up_show(), "report": shown["report"]}
        return shown

    def finish_up_show(self) -> dict[str, Any]:
        """The finish-up request with its resolved window (`active`: none pending)."""
        from nightlab.loop import finish_request
        from nightlab.store import queries

        if not self.db.is_file():
            return {"active": False, "summary": "no finish-up requested"}
        with read.connect(self.db) as conn:
            value = queries.meta_value(conn, finish_request.META_KEY)
            started = queries.night_started(conn)
        wanted = finish_request.parse(value)
        if wanted is None:
            return {"active": False, "summary": "no finish-up requested"}
        begins, ends = wanted.window(started)
        return {
            **wanted.model_dump(),
            "active": wanted.phase not in ("done", "cancelled"),
            "begins_at": begins,
            "ends_at": ends,
            "summary": wanted.describe(started),
            "file": str(self.paths.finish_up),
        }

    def finish_up_cancel(self) -> dict[str, Any]:
        from nightlab.loop import finish_request

        shown = self.finish_up_show()
        if not shown["active"]:
            raise LabError(f"no finish-up to cancel ({shown['summary']})")
        wanted = finish_request.FinishUp.model_validate(
            {k: shown[k] for k in finish_request.FinishUp.model_fields}
        )
        self._store_finish(wanted.model_copy(update={"phase": "cancelled"}))
        return self.finish_up_show()

    def _store_finish(self, wanted: Any) -> None:
        from nightlab.loop import finish_request

        finish_request.store(self.state, wanted)

    def report(self, *, top_k: int | None = None) -> Path:
        """Write the morning report (under .nightlab/reports/<night>/); returns its folder."""
        from nightlab.report import write_report

        if not self.db.is_file():
            raise LabError(f"{self.name} has not run yet: nothing to report (`nightlab run`)")
        cfg = self.config
        return write_report(self.path, cfg, top_k=top_k or cfg.report.top_k)

    # ------------------------------------------------------------------ views
    def status(self) -> dict[str, Any]:
        """State, heartbeat, counts, best trial, `loop_job` (the `status --json` object)."""
        out = read.status(self.db, self.name)
        if (self.state / "loop_job.json").is_file():
            from nightlab.lab import slurm_loop

            out["loop_job"] = slurm_loop.describe(self, out)
        return out

    def _direction(self) -> str:
        return self._quick("objective", "direction")

    def leaderboard(self, top: int | None = 10) -> list[dict[str, Any]]:
        """Succeeded trials, best first (`top=None`: all of them)."""
        direction = self._direction()
        return ranking.leaderboard(self.db, direction, top) if self.db.is_file() else []

    def storyline(self, last: int | None = None) -> list[str]:
        return read.storyline(self.db, last) if self.db.is_file() else []

    def reset(self, *, drop_tracking: bool = False, keep_tracking: bool | None = None) -> list[str]:
        """Start the lab afresh: remove `.nightlab/` and nightlab's git refs (the code and
        your branches are untouched). The lab's MLflow store is kept unless `drop_tracking`
        (`keep_tracking`, the older spelling: False drops it). Returns what was removed."""
        from nightlab.lab.reset import reset

        drop = drop_tracking or keep_tracking is False
        return reset(self, drop_tracking=drop)

    # ------------------------------------------------------------------ adopt
    def adopt(self, trial: int) -> dict[str, Any]:
        """Bring trial `trial`'s code (and parameters, as the new defaults) onto the user's
        branch as one commit. Refuses to overwrite uncommitted or diverged user changes."""
        from nightlab.lab.adopt import adopt

        return adopt(self, trial)


def _flags(options: dict[str, Any]) -> list[str]:
    """`nightlab run` options as command-line flags (True: a bare flag; None, False: none)."""
    args: list[str] = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args
