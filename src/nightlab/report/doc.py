"""A tiny document model: the paper report is built once as sections of blocks, then
rendered to Markdown here and to HTML by `html.py`, so both say exactly the same thing.

Inline text may use `**bold**` and `` `code` `` (the common subset of both renderings).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from markupsafe import Markup


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    file: str  # relative to the report folder
    caption: str


Block = Para | Bullets | Table | Image


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass
class Doc:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)


def cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, on one line."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(doc: Doc) -> str:
    out = [f"# {doc.title}", "", doc.subtitle, ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Para):
                out.append(block.text)
            elif isinstance(block, Bullets):
                out += [f"- {item}" for item in block.items]
            elif isinstance(block, Table):
                out.append(md_table(block.header, block.rows))
            elif isinstance(block, Image):
                out.append(f"![{block.caption}]({block.file})")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
# the report's own relative links (report/links.py): from `reports/<night>/` to a trial's
# files, or to a diff written beside the report
LOCAL_LINK = re.compile(
    r"\.\./\.\./trials/\d+/(?:stdout\.log|stderr\.log|diff\.patch)|diffs/trial-\d+\.patch"
)
_LINK = re.compile(  # http(s) or one of the local shapes: never javascript: nor a free path
    rf"\[([^\]]+)\]\((https?://[^)\s\"'<>]+|{LOCAL_LINK.pattern})\)"
)


def inline_html(text: str) -> Markup:
    """Escape `text` for HTML, then turn `**bold**`, `` `code` `` and `[text](https://…)`
    (or a link of `LOCAL_LINK`'s shape) into tags."""
    escaped = html.escape(str(text), quote=True)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    escaped = _LINK.sub(r'<a href="\2" rel="noopener noreferrer">\1</a>', escaped)
    return Markup(_BOLD.sub(r"<strong>\1</strong>", escaped))
