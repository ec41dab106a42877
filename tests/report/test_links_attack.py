"""Hostile review of the report's links: text an agent or a trial wrote (a hypothesis, a
failure reason) must not become a link in report.html, neither outside the lab nor to
another trial's logs passed off as its own; only the links nightlab made render as tags."""

from __future__ import annotations

import re

from report_nights import baseline, config, hand_store, trial

from nightlab.report import write_report
from nightlab.report.doc import Linked, inline_html

FORGED_LOG = "[stdout](../../trials/1/stdout.log)"
OUTSIDE = "[MLflow](https://evil.example/steal)"


def test_agent_text_never_renders_as_a_link():
    for text in (FORGED_LOG, OUTSIDE, "[diff](diffs/trial-1.patch)", "**[x](https://a.b/)**"):
        assert "<a " not in inline_html(text), text


def test_the_reports_own_links_still_render_and_are_escaped():
    got = inline_html(Linked([("stdout", "../../trials/3/stdout.log"), ("x", "javascript:1")]))
    assert '<a href="../../trials/3/stdout.log"' in got
    assert "javascript" not in got and got.count("<a ") == 1
    assert inline_html(Linked([])) == "—" and str(Linked([])) == "—"


def test_a_hypothesis_and_a_reason_cannot_forge_links_in_the_html(tmp_path):
    trials = [
        *baseline([1.0, 1.01, 0.99]),
        trial(4, None, status="failed", verdict=None, reason=f"see {OUTSIDE}",
              dimension="optimization", hypothesis=f"my log: {FORGED_LOG}"),
        trial(5, 1.2, dimension="optimization", hypothesis=f"better {OUTSIDE} {FORGED_LOG}"),
    ]  # fmt: skip
    lab = hand_store(tmp_path / "lab", trials)
    folder = lab / ".nightlab" / "trials" / "1"
    folder.mkdir(parents=True)
    (folder / "stdout.log").write_text("the baseline's log\n")
    page = (write_report(lab, config()) / "report.html").read_text()
    assert "evil.example" in page  # the text is shown ...
    assert 'href="https://evil' not in page  # ... never as a link
    # the baseline's stdout is linked from its own rows (results, leaderboard) only; trial
    # 4's and 5's text shows as the text it is
    assert len(re.findall(r'href="\.\./\.\./trials/1/stdout\.log"', page)) == 2
    assert f"my log: {FORGED_LOG}" in page


EMBED = "![t](https://evil.example/beacon.png) <img src=x onerror=alert(1)> [y](javascript:z)"


def test_agent_text_embeds_nothing_in_the_markdown_files(tmp_path):
    """A Markdown viewer (an editor's preview, a forge) would load the image and render the
    tag: in the .md files an agent's text is text."""
    trials = [
        *baseline([1.0, 1.01, 0.99]),
        trial(4, None, status="failed", verdict=None, reason=EMBED, dimension="optimization",
              hypothesis=EMBED),
        trial(5, 1.2, dimension="optimization", hypothesis=EMBED),
    ]  # fmt: skip
    out = write_report(hand_store(tmp_path / "lab", trials), config(), top_k=5)
    files = sorted(out.glob("*.md"))
    assert len(files) >= 3
    for md in files:
        text = md.read_text()
        assert "](https://evil" not in text and "](javascript" not in text, md.name
        assert "<img" not in text, md.name
    assert "evil.example" in (out / "final_paper_report.md").read_text()
    assert "](objective_per_trial.png)" in (out / "final_paper_report.md").read_text()  # its own
