"""Papers for the worker, the mentor and the report: one small interface over arXiv,
OpenAlex and Semantic Scholar (`[literature] sources`).

A `Source` searches one service through its client library and returns `Paper`s,
normalised the same way whatever their origin (title, authors, year, venue, abstract, ids,
url, citation count) so that `dedupe` can merge one paper found by two services. Sources
only talk to the network: the cache lives in the store and is used by the loop's
`Library` (loop/library.py), which the `research` action, the agents' tools
(`search_papers`, `read_paper`) and `nightlab papers` all go through.

A failure is ordinary: a source raises `LiteratureError` (one line: which service, why),
never anything else, and the caller falls back to the cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nightlab.agents.literature.paper import (
    ABSTRACT_CHARS,
    SOURCES,
    LiteratureError,
    Paper,
    Source,
    dedupe,
    normal_title,
)

if TYPE_CHECKING:
    from nightlab.config import LiteratureSection

__all__ = [
    "ABSTRACT_CHARS", "SOURCES", "LiteratureError", "Paper", "Source", "dedupe", "normal_title",
    "sources_for",
]  # fmt: skip


def sources_for(section: LiteratureSection) -> list[Source]:
    """The `[literature] sources`, in order, each pointed at its configured base URL. A
    missing client library fails with the `pip install` that brings it."""
    from nightlab.agents.literature import arxiv_source, openalex_source, s2_source

    make = {
        "arxiv": arxiv_source.ArxivSource,
        "openalex": openalex_source.OpenAlexSource,
        "semanticscholar": s2_source.SemanticScholarSource,
    }
    return [make[name](section) for name in section.sources]
