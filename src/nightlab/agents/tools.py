"""What an LLM worker may look at: a read-only view of the lab, built by the loop.

Every tool reads; none writes or runs anything. Files are read at the current best code
(the base the next trial starts from), restricted to the lab's `editable` files. A trial's
logs and diff are read only for a trial the store knows that is not the held-out test run
(kind `test`): the loop's `trial_file` raises `Withheld` for that one, and a trial id that is
not a positive whole number is refused before anything is read. Every answer (errors
included) is redacted (store/redact.py) before the model sees it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightlab.config import matches
from nightlab.store.paths import DIFF, LOGS
from nightlab.store.redact import redact

MAX_CHARS = 20_000  # a tool answer never floods the context
SPLIT_MARGIN = 200  # a log is redacted this many lines before its tail (split secrets)
MAX_TRIAL_ID = 2**63 - 1  # SQLite's largest integer: a bigger "id" names no trial


class Withheld(Exception):
    """A trial no agent may read (the held-out test run, or no trial at all): the message
    is the tool's answer, after "refused: "."""


def trial_id(trial: Any) -> int:
    """`trial` as a trial id (an int, or a string of ASCII digits, as a model may send it);
    anything else — negative, zero, huge, a float, a bool, a path — is `Withheld`."""
    if isinstance(trial, str) and trial.isascii() and trial.isdigit() and len(trial) <= 19:
        trial = int(trial)
    if isinstance(trial, bool) or not isinstance(trial, int) or not 0 < trial <= MAX_TRIAL_ID:
        big = isinstance(trial, int) and abs(trial) > MAX_TRIAL_ID  # str() of it may raise
        shown = "a number that large" if big else repr(trial)[:40]
        raise Withheld(f"no trial {shown}: give a trial id the leaderboard shows")
    return trial


@dataclass
class LabView:
    files: Callable[[], list[str]]  # every file of the base code, lab-relative
    read: Callable[[str], str | None]  # a file of the base code, None when absent
    editable: list[str]
    leaderboard: Callable[[int], list[dict[str, Any]]]
    # a file of a trial's folder (None when absent); raises Withheld for the test run
    trial_file: Callable[[int, str], str | None]
    export: Callable[[Path], None] | None = None  # writes the base code into a folder
    papers: Any = None  # the lab's literature Library (loop/library.py): search(q), read(key)
    searches: int = 0  # search_papers calls so far (a mentor's compliance is counted by it)

    def _is_editable(self, path: str) -> bool:
        return matches(path, self.editable)

    def list_files(self) -> list[str]:
        """The editable files of the current best code."""
        return [f for f in self.files() if self._is_editable(f)]

    def read_file(self, path: str) -> str:
        """The content of one editable file of the current best code."""
        if not self._is_editable(path):
            return f"error: {path!r} is not editable (editable: {self.editable})"
        text = self.read(path)
        return f"error: {path!r} does not exist" if text is None else _cap(text)

    def grep(self, text: str) -> str:
        """Lines of the editable files containing `text`, as path:line: content. (Plain text,
        not a regular expression: a model's pattern must never stall the loop.)"""
        if not text:
            return "error: give the text to look for"
        hits = []
        for path in self.list_files():
            for n, line in enumerate((self.read(path) or "").splitlines(), 1):
                if text in line:
                    hits.append(f"{path}:{n}: {line}")
        return _cap("\n".join(hits) or "no match")

    def tail_log(self, trial: int, lines: int = 40) -> str:
        """The last lines of a trial's stderr and stdout (never the held-out test run's)."""
        trial, parts, lines = trial_id(trial), [], max(1, min(int(lines), 10_000))
        for name in LOGS:
            text = self.trial_file(trial, name)
            if text:
                # redacted before the cut: a secret split over lines before the tail is whole
                text = redact("\n".join(text.splitlines()[-(lines + SPLIT_MARGIN) :]))
                parts.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return _cap("\n".join(parts) or f"no logs for trial {trial}")

    def show_leaderboard(self, top: int = 10) -> str:
        """The best succeeded trials with their parameters, as JSON lines (the board never
        holds the held-out test run: store/ranking.py)."""
        keys = ("rank", "trial", "objective", "verdict", "params", "hypothesis", "dimension")
        rows = self.leaderboard(max(1, min(top, 50)))
        return _cap("\n".join(json.dumps({k: r.get(k) for k in keys}) for r in rows) or "empty")

    def search_papers(self, query: str) -> str:
        """Papers for a query (arXiv, OpenAlex, Semantic Scholar; cached in the lab), one
        per line with the id to cite and to read_paper."""
        if self.papers is None:
            return "no literature here: [literature] is not available in this night"
        self.searches += 1
        found = self.papers.search(str(query))
        lines = [f"{p.key} | {p.line()}" + (f" | {p.url}" if p.url else "") for p in found.papers]
        head = f"{len(found.papers)} paper(s) for {found.query!r}" + (
            " (from the cache)" if found.cached else ""
        )
        return _cap("\n".join([head, *found.notes, *lines]))

    def read_paper(self, id: str) -> str:
        """One paper's metadata and abstract, by the id search_papers gave."""
        if self.papers is None:
            return "no literature here: [literature] is not available in this night"
        paper = self.papers.read(str(id))
        if paper is None:
            return f"no paper {id!r} known: search_papers first and use an id it gave"
        meta = paper.model_dump(exclude={"abstract"}, exclude_none=True)
        abstract = paper.abstract or "(no abstract)"
        return _cap(json.dumps(meta, ensure_ascii=False) + "\n\n" + abstract)

    def trial_diff(self, trial: int) -> str:
        """The code change a trial ran with (empty when it only changed parameters; never
        the held-out test run's)."""
        trial = trial_id(trial)
        text = self.trial_file(trial, DIFF)
        return _cap(text) if text else f"trial {trial} ran the base code unchanged"


def _cap(text: str) -> str:
    text = redact(text)  # before the cut, which could halve a secret
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "\n… (cut)"


def _answer_safely(method: Callable[..., str]) -> Callable[..., str]:
    """A tool never raises into the model run (a failure or a refusal is an answer the model
    can read), and never shows it a secret (every answer is redacted)."""

    @functools.wraps(method)
    def safe(*args: Any, **kwargs: Any) -> str:
        try:
            answer = method(*args, **kwargs)
        except Withheld as exc:
            answer = f"refused: {exc}"[:500]
        except Exception as exc:
            answer = f"error: {type(exc).__name__}: {exc}"[:500]
        return redact(answer)

    return safe


for _name in ("read_file", "grep", "tail_log", "show_leaderboard", "trial_diff", "search_papers",
              "read_paper"):  # fmt: skip
    setattr(LabView, _name, _answer_safely(getattr(LabView, _name)))
