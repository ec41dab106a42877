"""The paper model every source returns, the `Source` protocol and `dedupe` (re-exported by
the package: import them from `nightlab.agents.literature`). The source modules import them
from here, so that the package can import the sources without a cycle."""

from __future__ import annotations

import re
import unicodedata
from typing import Protocol

from pydantic import BaseModel, Field

SOURCES = ("arxiv", "openalex", "semanticscholar")
ABSTRACT_CHARS = 4000  # an abstract is cut here: it reaches prompts


class LiteratureError(Exception):
    """A source could not answer (network, HTTP status, malformed body, timeout)."""


class Paper(BaseModel):
    """One paper, as every source reports it."""

    title: str
    authors: list[str] = Field(default_factory=list)
    year: int | None = None
    venue: str | None = None
    abstract: str = ""
    arxiv: str | None = None  # "2106.09685" (no version, no "arXiv:")
    doi: str | None = None  # lower case, no "https://doi.org/"
    s2: str | None = None  # Semantic Scholar paperId
    openalex: str | None = None  # "W2741809807"
    url: str | None = None
    citations: int | None = None
    sources: list[str] = Field(default_factory=list)  # the services that found it

    def ids(self) -> list[str]:
        """Every key this paper is known by, most stable first: `arxiv:…`, `doi:…`,
        `s2:…`, `openalex:…`, and `title:…` (its normalised title) always last."""
        keys = [f"{kind}:{value}" for kind, value in (
            ("arxiv", self.arxiv), ("doi", self.doi), ("s2", self.s2),
            ("openalex", self.openalex),
        ) if value]  # fmt: skip
        return [*keys, f"title:{normal_title(self.title)}"]

    @property
    def key(self) -> str:
        """The paper's one id (what a decision cites): its first `ids()`."""
        return self.ids()[0]

    def merge(self, other: Paper) -> Paper:
        """This paper completed with what `other` (the same paper from another source)
        knows and this one does not."""
        data = self.model_dump()
        for name, value in other.model_dump().items():
            if name == "sources":
                data[name] = [*data[name], *(s for s in value if s not in data[name])]
            elif name == "citations":
                data[name] = max((v for v in (data[name], value) if v is not None), default=None)
            elif not data[name] and value:
                data[name] = value
        return Paper(**data)

    def line(self) -> str:
        """One compact line: title (year), first author, venue, key, citations."""
        who = self.authors[0] + (" et al." if len(self.authors) > 1 else "") if self.authors else ""
        bits = [f"{self.title} ({self.year or 'n.d.'})", who, self.venue or "", self.key]
        if self.citations is not None:
            bits.append(f"{self.citations} citations")
        return " — ".join(b for b in bits if b)


class Source(Protocol):
    """One service, through its client library."""

    name: str  # one of SOURCES

    def search(self, query: str, limit: int) -> list[Paper]:
        """Up to `limit` papers for `query`; raises LiteratureError when it cannot."""
        ...

    def get(self, key: str) -> Paper | None:
        """The paper with this key (`arxiv:…`, `doi:…`, `s2:…`, `openalex:…`) if this
        service knows it; None when it does not; LiteratureError when it cannot answer."""
        ...


def normal_title(title: str) -> str:
    """A title reduced for comparison: accents, case, punctuation and spacing dropped."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def dedupe(papers: list[Paper]) -> list[Paper]:
    """One entry per paper, in first-seen order: papers sharing any id (arXiv, DOI, S2,
    OpenAlex or the normalised title) are merged."""
    out: list[Paper] = []
    seen: dict[str, int] = {}
    for paper in papers:
        at = next((seen[k] for k in paper.ids() if k in seen), None)
        if at is None:
            at = len(out)
            out.append(paper)
        else:
            out[at] = out[at].merge(paper)
        for k in out[at].ids():
            seen.setdefault(k, at)
    return out
