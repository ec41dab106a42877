"""`nightlab papers [LAB] QUERY`: search papers through the lab's literature cache."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from nightlab.lab.cli_common import console, fail, guard
from nightlab.lab.cli_common import lab as lab_of

ABSTRACT_CHARS = 160
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'“])")


def papers(
    words: Annotated[list[str], typer.Argument(
        metavar="[LAB] QUERY", help="The lab folder (default: here), then what to search for.",
        show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    offline: Annotated[bool, typer.Option(
        "--offline", help="The lab's cache only, never the network.")] = False,
) -> None:  # fmt: skip
    """Search papers (arXiv, OpenAlex, Semantic Scholar) and keep them in the lab's cache."""
    lab, query = split_words(words)
    target = lab_of(lab)
    try:
        found = guard(search, target, query, offline=True if offline else None)
    except ValueError as exc:
        fail(str(exc), 2)
    if as_json:
        sys.stdout.write(json.dumps(found.as_json()) + "\n")
        return
    warn = console(stderr=True)
    for note in found.notes:
        warn.print(f"warning: {printable(note)}", style="yellow", soft_wrap=True, markup=False)
    show(found)


def search(target: Any, query: str, *, offline: bool | None = None) -> Any:
    """Search papers through the lab's cache, which keeps the answers (the store migrated
    first): a loop.library.Found. ValueError for a bad query; a network failure is a note."""
    from nightlab.loop.library import Library
    from nightlab.store.db import Store

    cfg = target.config
    store = Store(target.db)
    try:
        store.migrate()
        return Library(cfg, store).search(query, offline=offline)
    finally:
        store.close()


def split_words(words: list[str]) -> tuple[Path, str]:
    """(LAB, QUERY) from the words given: the first is the lab when more follow and it is a
    folder or written as a path; the rest is the query."""
    if len(words) >= 2 and (Path(words[0]).is_dir() or os.sep in words[0] or "/" in words[0]):
        return Path(words[0]), " ".join(words[1:])
    return Path("."), " ".join(words)


def show(found: Any) -> None:
    from rich.text import Text

    out = console()
    if not found.papers:
        how = " (the cache only: offline)" if found.cached else ""
        out.print(f"no papers for “{printable(found.query)}”{how}", soft_wrap=True, markup=False)
        return
    where = "from the lab's cache" if found.cached else "searched; kept in the lab's cache"
    out.print(f"{len(found.papers)} paper(s) for “{printable(found.query)}” ({where})",
              soft_wrap=True, markup=False)  # fmt: skip
    for rank, paper in enumerate(found.papers, 1):
        head = Text(f"{rank}. ")
        head.append(printable(paper.title), style="bold")
        head.append(f" ({paper.year or 'n.d.'})")
        out.print(head, soft_wrap=True)
        bits = [authors(paper.authors), printable(paper.venue or "")]
        out.print("   " + " — ".join(b for b in bits if b), soft_wrap=True, markup=False)
        out.print(Text("   ").append(paper.key, style="cyan").append(
            f"  {printable(paper.url)}" if paper.url else ""), soft_wrap=True)  # fmt: skip
        if line := first_sentence(paper.abstract):
            out.print(Text("   " + line, style="dim"), soft_wrap=True)


def authors(names: list[str]) -> str:
    shown = ", ".join(printable(n) for n in names[:3])
    return shown + (" et al." if len(names) > 3 else "")


def first_sentence(abstract: str, limit: int = ABSTRACT_CHARS) -> str:
    """The abstract's first sentence on one line, cut to about `limit` characters."""
    text = printable(abstract)
    text = _SENTENCE.split(text, maxsplit=1)[0] if text else ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def printable(text: str | None) -> str:
    """One line of plain text: control characters and line breaks become spaces."""
    return " ".join(_UNPRINTABLE.sub(" ", text or "").split())
