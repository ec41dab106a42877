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


_TAG = re.compile(r"<(?=[A-Za-z/!?])")  # what a Markdown viewer would take for HTML


def md_text(text: object) -> str:
    """Text for the Markdown files: an agent's or a trial's words (a hypothesis, a reason)
    become no link, image (`![x](https://…)` loads when the file is viewed) nor HTML tag in a
    Markdown viewer; a `Linked` cell's own links stay."""
    if isinstance(text, Linked):
        return str(text)
    return _TAG.sub("&lt;", str(text)).replace("](", "]\\(")


def cell(text: object) -> str:
    """A Markdown table cell: pipes escaped, on one line."""
    return md_text(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(doc: Doc) -> str:
    out = [f"# {md_text(doc.title)}", "", md_text(doc.subtitle), ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Para):
                out.append(md_text(block.text))
            elif isinstance(block, Bullets):
                out += [f"- {md_text(item)}" for item in block.items]
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
_HREF = re.compile(rf"https?://[^)\s\"'<>]+|{LOCAL_LINK.pattern}")


class Linked(str):
    """A cell whose links nightlab made itself (a trial's files, its MLflow run, a cached
    paper): Markdown `[label](href) · …` as a string, `<a>` tags in HTML. Links reach the
    HTML only this way: text an agent or a trial wrote (a hypothesis, a failure reason) that
    looks like `[stdout](../../trials/3/stdout.log)` or `[x](https://…)` stays text, so it
    can neither link outside the lab nor pass another trial's log off as its own."""

    links: tuple[tuple[str, str], ...]
    after: str

    def __new__(cls, links: list[tuple[str, str]], after: str = "", empty: str = "—") -> Linked:
        # a link of any other shape (javascript:, a free path) is shown as its label alone
        links = [(label, href if _HREF.fullmatch(href) else "") for label, href in links]
        shown = " · ".join(
            f"[{_TAG.sub('&lt;', label)}]({href})" if href else md_text(label)
            for label, href in links
        )
        obj = super().__new__(cls, (shown or (empty if not after else "")) + after)
        obj.links, obj.after = tuple(links), after
        return obj


def inline_html(text: str) -> Markup:
    """Escape `text` for HTML, then turn `**bold**` and `` `code` `` into tags; a `Linked`
    cell's own links (and only those) become `<a>` tags."""
    if isinstance(text, Linked):
        tags = " · ".join(
            f'<a href="{html.escape(href, quote=True)}" rel="noopener noreferrer">'
            f"{html.escape(label, quote=True)}</a>"
            if href
            else html.escape(label, quote=True)
            for label, href in text.links
        )
        if not tags and not text.after:
            return Markup(html.escape(str(text)))
        return Markup(tags + html.escape(text.after, quote=True))
    escaped = html.escape(str(text), quote=True)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return Markup(_BOLD.sub(r"<strong>\1</strong>", escaped))
