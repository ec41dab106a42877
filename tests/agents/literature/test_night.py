"""A night with a scripted LLM worker that chooses `research`, reads a paper with
`read_paper`, and cites it in its next `run` decision; the searches go through the real
client libraries to local stand-ins of arXiv and OpenAlex (servers.py), are cached in the
lab, and the cited paper reaches the workpad, the storyline and the report's Related work."""

from __future__ import annotations

import json
import re

import pytest
from pydantic_ai.messages import ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from nightlab import Lab

from .servers import Library, scripted_lab
from conftest import cli, rows

pytestmark = pytest.mark.slow
CITED = "arxiv:2202.12139"  # "Testing Deep Learning Models…", in both recorded answers


def worker_model(messages, info: AgentInfo) -> ModelResponse:
    """First cycle: research. Next one (its context shows the papers): read the first
    paper listed, then run, citing it. Then stop."""
    prompt = "".join(str(getattr(p, "content", "")) for p in messages[0].parts)
    parts = [p for m in messages for p in getattr(m, "parts", [])]
    returns = [p for p in parts if isinstance(p, ToolReturnPart)]
    answer = info.output_tools[0].name
    if "# Papers from your last research" not in prompt:
        return ModelResponse(parts=[ToolCallPart(answer, {
            "action": "research", "query": "testing deep learning models",
            "rationale": "before changing the model, see how others test deep learning models",
        })])  # fmt: skip
    listed = re.search(r"^- (arxiv:[\d.]+):", prompt, re.M)
    assert listed, prompt
    if not returns:
        return ModelResponse(parts=[ToolCallPart("read_paper", {"id": listed.group(1)})])
    if "# Last trial" in prompt and "boost" in prompt and "0.5" in prompt:
        return ModelResponse(parts=[ToolCallPart(answer, {
            "action": "stop", "rationale": "the one idea from the paper has been tried now",
        })])  # fmt: skip
    assert "Testing Deep Learning Models" in returns[-1].content
    return ModelResponse(parts=[ToolCallPart(answer, {
        "action": "run", "rationale": "the paper suggests a larger boost; try 0.5",
        "hypothesis": "score rises by 0.5", "params": {"boost": 0.5},
        "cites": [listed.group(1), "arxiv:9999.99999"],
    })])  # fmt: skip


def test_a_worker_researches_reads_and_cites_and_the_report_lists_it(make_lab, monkeypatch):
    from nightlab.agents import llm

    monkeypatch.setattr(llm, "resolve_model", lambda spec, cfg, role="worker": FunctionModel(
        worker_model))  # fmt: skip
    with Library() as papers:
        lab = scripted_lab(make_lab(max_trials=4), papers.url)
        toml = lab / "nightlab.toml"
        toml.write_text(toml.read_text().replace("auto = false", "auto = true"))  # the report
        final = Lab(lab).run(report=lambda line: None)
        searched = len(papers.requests)

        assert final["state"] == "finished", final
        # one request per source for the research; read_paper found it in the cache
        assert sorted(r.path.split("/")[1] for r in papers.requests) == ["api", "openalex"]
        (done,) = rows(lab, "SELECT data FROM events WHERE kind = 'research_done'")
        found = json.loads(done[0])
        assert found["query"] == "testing deep learning models" and CITED in found["keys"]
        # the paper found by both services is one paper, with both ids
        (record,) = rows(lab, "SELECT data FROM papers WHERE key = ?", CITED)
        assert sorted(json.loads(record[0])["sources"]) == ["arxiv", "openalex"]

        (trial,) = rows(lab, "SELECT id, decision_id FROM trials WHERE kind = 'trial'")
        (body,) = rows(lab, "SELECT body, reasons FROM decisions WHERE id = ?", trial[1])
        decision = json.loads(body[0])
        assert decision["cites"] == [CITED]  # the invented id was dropped, with a note
        assert any("arxiv:9999.99999" in note for note in decision["repairs"])

        art = lab / ".nightlab" / "artifacts"
        story = (art / "storyline.md").read_text()
        assert "research 'testing deep learning models': " in story
        assert f"trial {trial[0]} (trial) succeeded" in story and f"cites {CITED}" in story
        pad = (art / "workpad.md").read_text()
        assert "Testing Deep Learning Models" in pad and "https://arxiv.org/abs/2202.12139" in pad

        (report,) = (lab / ".nightlab" / "reports").glob("*/final_paper_report.md")
        related = report.read_text().split("## Related work")[1].split("\n## ")[0]
        assert "[Testing Deep Learning Models" in related
        assert "(2022)" in related and f"| trial {trial[0]} |" in related
        assert re.search(r"\[Testing Deep Learning Models[^]]*\]\(https://", related)  # a link
        html = next((lab / ".nightlab" / "reports").glob("*/report.html")).read_text()
        assert re.search(r'<a href="https://[^"]+" rel="noopener noreferrer">Testing Deep', html)

        # the same query again, from the command line: the cache answers, no request
        again = cli("papers", str(lab), "testing deep learning models", "--json")
        assert json.loads(again.stdout)["cached"] is True
        assert len(papers.requests) == searched
