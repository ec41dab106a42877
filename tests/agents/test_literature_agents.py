"""The literature on the agents' side: the research decision's query, the tools
`search_papers` / `read_paper` a model calls, and a mentor that must search before it
challenges (`[agents] mentor_require_literature`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic_ai.messages import ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from nightlab.agents import gate
from nightlab.agents.decision import Decision
from nightlab.agents.literature import Paper
from nightlab.agents.mentor import Mentor
from nightlab.agents.tools import MAX_CHARS, LabView
from nightlab.config import load_config

LORA = Paper(
    title="LoRA: Low-Rank Adaptation of Large Language Models", authors=["Edward J. Hu", "Y"],
    year=2021, arxiv="2106.09685", url="https://arxiv.org/abs/2106.09685",
    abstract="We propose Low-Rank Adaptation.", citations=9000, sources=["arxiv"],
)  # fmt: skip


@dataclass
class Found:
    query: str
    papers: list[Paper]
    cached: bool = False
    notes: list[str] = field(default_factory=list)


class FakeLibrary:
    def __init__(self, papers: list[Paper]) -> None:
        self.papers, self.queries = papers, []

    def search(self, query: str) -> Found:
        self.queries.append(query)
        return Found(query, self.papers, notes=["openalex: timeout; served the cache"])

    def read(self, key: str, offline: bool | None = None) -> Paper | None:
        return next((p for p in self.papers if key in p.ids()), None)


def view(library=None) -> LabView:
    return LabView(lambda: [], lambda p: None, [], lambda k: [], lambda t, n: None, papers=library)


def test_a_research_decision_needs_a_query_and_only_it_carries_one(make_lab):
    cfg = load_config(make_lab())
    no_query = Decision(action="research", rationale="the lr schedule literature may help here")
    assert "needs a `query`" in " ".join(gate.check(no_query, cfg, lambda p: None).reasons)
    ok = no_query.model_copy(update={"query": "cosine learning rate warmup small CNN"})
    assert gate.check(ok, cfg, lambda p: None).accepted
    stray = Decision(action="wait", rationale="nothing to do until the trial ends", query="x")
    assert "carries a query" in " ".join(gate.check(stray, cfg, lambda p: None).reasons)
    assert "query" not in Decision.model_json_schema()["required"]


def test_search_papers_gives_ids_to_cite_and_read_paper_the_abstract():
    library = FakeLibrary([LORA])
    v = view(library)
    answer = v.search_papers("low rank adaptation")
    assert answer.startswith("1 paper(s) for 'low rank adaptation'")
    assert "arxiv:2106.09685 | LoRA" in answer and "https://arxiv.org/abs/2106.09685" in answer
    assert "openalex: timeout" in answer and v.searches == 1
    text = v.read_paper("arxiv:2106.09685")
    assert '"year": 2021' in text and text.endswith("We propose Low-Rank Adaptation.")
    assert "search_papers first" in v.read_paper("arxiv:0000.00000")  # an invented id


def test_the_tools_never_raise_never_flood_and_never_show_a_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-1234567890")
    huge = LORA.model_copy(update={"abstract": "x" * 100_000 + " sk-secret-value-1234567890"})
    v = view(FakeLibrary([huge]))
    text = v.read_paper("arxiv:2106.09685")
    assert len(text) <= MAX_CHARS + 20 and "sk-secret-value" not in text

    class Broken(FakeLibrary):
        def search(self, query):
            raise ValueError("a query must be 1–300 characters")

    assert view(Broken([])).search_papers("q" * 5000).startswith("error: ValueError")
    assert "not available" in view(None).search_papers("anything")


def mentor_model(searches_when_sent_back: bool, prompts: list[str]):
    """A mentor that challenges at once; sent back, it searches (or not) and challenges."""

    def answer(messages, info: AgentInfo) -> ModelResponse:
        prompt = "".join(
            str(getattr(p, "content", "")) for m in messages for p in getattr(m, "parts", [])
        )
        prompts.append(prompt)
        searched = any(
            isinstance(p, ToolReturnPart) for m in messages for p in getattr(m, "parts", [])
        )
        if "# Sent back" in prompt and searches_when_sent_back and not searched:
            return ModelResponse(parts=[ToolCallPart("search_papers", {"query": "lr warmup"})])
        review = {"verdict": "off_track", "critique": "the warmup claim is unsupported",
                  "cites": ["arxiv:2106.09685"] if searched else []}  # fmt: skip
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, review)])

    return FunctionModel(answer)


def test_a_mentor_must_search_before_it_challenges(make_lab):
    lab = make_lab()
    (lab / "nightlab.toml").write_text(
        (lab / "nightlab.toml").read_text().replace(
            "[report]", "mentor_require_literature = true\n\n[report]"
        )
    )
    cfg = load_config(lab)
    decision = Decision(action="run", rationale="raise the boost a little", params={"boost": 0.1})
    for searches, state in ((True, "searched"), (False, "non_compliant")):
        library, prompts = FakeLibrary([LORA]), []
        mentor = Mentor("function:m", cfg, lab, model=mentor_model(searches, prompts))
        mentor.view = view(library)
        review = mentor.review("# Context", decision, "stalled")
        assert review.verdict == "off_track" and review.literature == state
        assert len(library.queries) == (1 if searches else 0)
        assert review.cites == (["arxiv:2106.09685"] if searches else [])
        assert "# Sent back" not in prompts[0] and "# Sent back" in prompts[-1]  # once
        assert sum(p.count("# Sent back") > 0 for p in prompts) == (2 if searches else 1)
