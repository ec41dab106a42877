"""`report.html`: the paper report, the leaderboard and the condensed story in one
self-contained file (no network: styles inline, PNG plots as base64 data URIs), rendered
with the Jinja2 templates shipped in `templates/`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from nightlab.report.candidates import Candidate, params_text
from nightlab.report.doc import Bullets, Doc, Image, Para, Table, inline_html
from nightlab.store import fmt

TEMPLATES = Path(__file__).with_name("templates")


def data_uri(path: Path) -> str:
    """A PNG file as a `data:` URI (raises FileNotFoundError naming it when missing)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _blocks(doc: Doc, folder: Path) -> list[dict[str, Any]]:
    sections = []
    for section in doc.sections:
        blocks: list[dict[str, Any]] = []
        for b in section.blocks:
            if isinstance(b, Para):
                blocks.append({"kind": "para", "text": b.text})
            elif isinstance(b, Bullets):
                blocks.append({"kind": "bullets", "items": b.items})
            elif isinstance(b, Table):
                blocks.append({"kind": "table", "header": b.header, "rows": b.rows})
            elif isinstance(b, Image):
                src = data_uri(folder / b.file)
                blocks.append({"kind": "image", "src": src, "caption": b.caption})
        sections.append({"title": section.title, "blocks": blocks})
    return sections


def render(doc: Doc, folder: Path, story: str, board: dict[str, Any], top: list[Candidate]) -> str:
    """The HTML page; images are read from `folder` (where the plots were written); `top`
    are the leaderboard's candidates, whose links it shows."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["inline"] = inline_html
    env.filters["num"] = fmt.value
    env.filters["params"] = lambda params: params_text(dict(sorted(params.items())))
    story_lines = [
        line[2:] for line in story.splitlines() if line.startswith("- ")
    ]  # the bullet lines; the header is repeated as the page's intro
    intro = [
        line for line in story.splitlines()[1:] if line.strip() and not line.startswith(("-", "#"))
    ]
    return env.get_template("report.html.j2").render(
        title=doc.title,
        subtitle=doc.subtitle,
        sections=_blocks(doc, folder),
        story_intro=intro,
        story=story_lines,
        board=board,
        links={c.first["id"]: c.links for c in top},
    )
