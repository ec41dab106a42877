"""The LLM worker: pydantic-ai models (FunctionModel in units, the real OpenAI client
against a scripted server on 127.0.0.1 end to end)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from nightlab import Lab
from nightlab.agents import AgentError, make_worker
from nightlab.agents.llm import LLMWorker
from nightlab.agents.tools import LabView
from nightlab.config import load_config

from conftest import rows

CODE = "EXTRA = 0.0\nprint('score=1')\n"
EDIT = {"file": "train.py", "search": "EXTRA = 0.0", "replace": "EXTRA = 1.0"}


def view(files: dict[str, str]) -> LabView:
    return LabView(
        files=lambda: list(files),
        read=files.get,
        editable=["train.py"],
        leaderboard=lambda k: [],
        trial_file=lambda t, n: None,
    )


def scripted(messages, info: AgentInfo) -> ModelResponse:
    """Read train.py first; then answer with an edit of what was read."""
    returns = [
        p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)
    ]
    if not returns:
        return ModelResponse(parts=[ToolCallPart("_read_file", {"path": "train.py"})])
    assert "EXTRA = 0.0" in returns[-1].content
    decision = {
        "action": "run",
        "rationale": "EXTRA is 0 in train.py; one more should help",
        "hypothesis": "score rises by 1",
        "dimension": "model_arch",
        "edits": [EDIT],
    }
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, decision)])


def test_the_worker_reads_the_code_then_decides(make_lab):
    lab = make_lab()
    worker = LLMWorker("function:scripted", load_config(lab), lab, model=FunctionModel(scripted))
    worker.view = view({"train.py": CODE})
    ctx = {"objective": {"metric": "score", "direction": "maximize"}, "brief": "Max score."}
    decision = worker.decide(ctx)
    assert decision.action == "run" and decision.edits[0].replace == "EXTRA = 1.0"
    assert worker.last_usage["requests"] == 2


def test_tools_stay_inside_the_editable_files():
    v = view({"train.py": CODE, "secret.txt": "do not read"})
    assert v.list_files() == ["train.py"]
    assert "not editable" in v.read_file("secret.txt")
    assert "not editable" in v.read_file("../../etc/passwd")
    assert v.grep("EXTRA") == "train.py:1: EXTRA = 0.0"
    assert v.grep("(=+)+x") == "no match"  # plain text: no pattern can stall the loop
    assert v.read_file("a\x00.py").startswith("error")
    assert v.tail_log(10**299).startswith("refused: no trial")  # never an id of the store


def test_a_missing_key_fails_at_start_naming_the_variable(make_lab, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AgentError, match="OPENAI_API_KEY"):
        make_worker("openai:gpt-4o", load_config(make_lab()), Path("."))


def chat_answer(model: str, call_id: str, name: str, args: dict, tokens: tuple[int, int]):
    """An OpenAI chat completion whose one message is a call of tool `name`."""
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }
    return {
        "id": "x", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [call]}}],
        "usage": {"prompt_tokens": tokens[0], "completion_tokens": tokens[1],
                  "total_tokens": sum(tokens)},
    }  # fmt: skip


def reply(handler: BaseHTTPRequestHandler, status: int, payload: dict, **headers: str) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    for key, value in {**headers, "Content-Type": "application/json"}.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Scripted(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions: read the file, edit it, then stop."""

    conversations = 0
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Scripted.requests.append(body)
        last = body["messages"][-1]
        if last["role"] != "tool":
            Scripted.conversations += 1
            call = ("_read_file", {"path": "train.py"})
        elif Scripted.conversations == 1:
            assert "EXTRA = 0.0" in last["content"]
            call = (
                "final_result",
                {
                    "action": "run",
                    "edits": [EDIT],
                    "rationale": "EXTRA is zero in train.py: raise it",
                    "hypothesis": "score +1",
                    "dimension": "model_arch",
                },
            )
        else:
            call = (
                "final_result",
                {"action": "stop", "rationale": "the planted improvement is found"},
            )
        answer = chat_answer(
            body["model"], f"call_{len(Scripted.requests)}", call[0], call[1], (100, 20)
        )
        reply(self, 200, answer)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_a_scripted_openai_server_drives_a_night_through_the_real_client(make_lab):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lab = make_lab(max_trials=10)
        toml = lab / "nightlab.toml"
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        toml.write_text(
            toml.read_text().replace(
                'worker = "search"', f'worker = "openai:scripted"\nbase_url = "{url}"'
            )
        )
        final = Lab(lab).run(report=lambda line: None)
    finally:
        server.shutdown()
    assert final["end_reason"].startswith("the worker stopped the night")
    assert final["trials"]["total"] == 4 and final["trials"]["kept"] == 1
    assert final["best"]["objective"] == pytest.approx(1.99)
    prompt = Scripted.requests[0]["messages"]
    assert any("Maximise score." in (m.get("content") or "") for m in prompt)
    usage = rows(lab, "SELECT data FROM events WHERE kind='agent_usage'")
    assert len(usage) == 2 and json.loads(usage[0][0])["input_tokens"] == 200


def always_run(messages, info: AgentInfo) -> ModelResponse:
    """Each call proposes a new boost: the night only ends by its token or dollar budget."""
    n = sum(1 for m in messages for p in getattr(m, "parts", []) if p.part_kind == "user-prompt")
    boost = round(0.1 * (len(always_run.calls) + 1), 3)
    always_run.calls.append(n)
    return ModelResponse(
        parts=[
            ToolCallPart(
                info.output_tools[0].name,
                {
                    "action": "run",
                    "rationale": f"probe boost {boost} next",
                    "params": {"boost": boost},
                },
            )
        ]
    )


always_run.calls = []


@pytest.mark.slow
def test_token_and_dollar_budgets_stop_the_night_and_show_in_status(make_lab, monkeypatch):
    from nightlab.agents import llm

    monkeypatch.setattr(
        llm, "resolve_model", lambda spec, cfg, role="worker": FunctionModel(always_run)
    )
    lab = make_lab(max_trials=50)
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace('worker = "search"', 'worker = "function:fake"')
        .replace("max_trials = 50", "max_trials = 50\nmax_usd = 0.004")
        + '\n[agents.prices."function:fake"]\ninput_per_mtok = 1.0\n'
        "output_per_mtok = 4.0\n"
    )
    final = Lab(lab).run(report=lambda line: None)
    assert final["end_reason"].startswith("max_usd=0.004 reached")
    spent = final["usage"]
    assert spent["requests"] >= 2 and spent["usd"] >= 0.004
    assert spent["usd"] == pytest.approx(
        (spent["input_tokens"] * 1 + spent["output_tokens"] * 4) / 1e6
    )
    board = Lab(lab).leaderboard(None)
    assert sum(1 for r in board if r["tokens"]) == final["trials"]["total"] - 3
    # without a price the dollar budget cannot be kept: refused at start
    toml.write_text(toml.read_text().split("[agents.prices")[0])
    with pytest.raises(AgentError, match="max_usd is set but"):
        make_worker("function:fake", load_config(lab), lab)


def test_an_openai_compatible_server_that_is_not_there_fails_at_start(make_lab):
    lab = make_lab()
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace(
            'worker = "search"', 'worker = "openai:local"\nbase_url = "http://127.0.0.1:9/v1"'
        )
    )
    with pytest.raises(AgentError, match="does not answer.*start the server"):
        make_worker("openai:local", load_config(lab), lab)


def test_the_storyline_is_shown_only_when_stalled():
    from nightlab.agents.context import render

    base = {"objective": {"metric": "m", "direction": "maximize"}, "storyline": ["[a] tried x"]}
    assert "tried x" not in render(base)
    stalled = render({**base, "stalled": "stalled: no trial kept in the last 6"})
    assert "# Stalled: stalled: no trial kept in the last 6" in stalled and "tried x" in stalled


def test_the_loop_watches_its_trials_while_the_model_thinks(make_lab, monkeypatch):
    """A slow model plans the next decision while a trial hangs: the trial is still cut at its
    budget on time, not when the model answers."""
    import time

    from nightlab.agents import llm

    def slow(messages, info: AgentInfo) -> ModelResponse:
        slow.calls += 1
        if slow.calls > 1:  # the decision planned while the hanging trial runs
            time.sleep(4.0)
        mode = "hang" if slow.calls == 1 else "ok"
        decision = {
            "action": "run",
            "rationale": f"probe {slow.calls}: does the trial survive mode {mode}?",
            "params": {"mode": mode, "boost": slow.calls / 10},
        }
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, decision)])

    slow.calls = 0
    monkeypatch.setattr(llm, "resolve_model", lambda spec, cfg, role="worker": FunctionModel(slow))
    lab = make_lab(decisions=[], max_trials=5, budget=1.0)
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace('worker = "replay:decisions.jsonl"', 'worker = "function:s"')
    )
    Lab(lab).run(report=lambda line: None)
    hung = rows(
        lab, "SELECT status, ended_at - started_at FROM trials WHERE params LIKE '%hang%'"
    )[0]
    statuses = [r[0] for r in rows(lab, "SELECT status FROM trials WHERE kind='trial' ORDER BY id")]
    assert hung[0] == "timeout" and hung[1] < 2.5, hung  # budget 1 s; the model took 4 s
    assert statuses == ["timeout", "succeeded"]


def test_mission_files_per_role_then_a_shared_one(make_lab):
    from nightlab.agents.context import read_mission

    lab = make_lab()
    (lab / "WORKER_MISSION.md").write_text("Prefer small models.\n")
    cfg = load_config(lab)
    assert read_mission(lab, cfg, "worker") == "Prefer small models.\n"
    assert read_mission(lab, cfg, "mentor") == ""
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("[agents]", '[agents]\nmission_file = "MISSION.md"'))
    with pytest.raises(AgentError, match="mission_file = 'MISSION.md' but .* does not exist"):
        read_mission(lab, load_config(lab), "mentor")
    (lab / "MISSION.md").write_text("Be terse.\n")
    assert read_mission(lab, load_config(lab), "mentor") == "Be terse.\n"
    assert read_mission(lab, load_config(lab), "worker") == "Prefer small models.\n"


class Flaky(BaseHTTPRequestHandler):
    """A provider in trouble: two 429s, a malformed decision, a good one; then three 500s
    (more than the client's own retries), then a stop."""

    script = ["429", "429", "bad", "run", "500", "500", "500", "stop"]
    served: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        step = Flaky.script[min(len(Flaky.served), len(Flaky.script) - 1)]
        Flaky.served.append(step)
        if step in ("429", "500"):
            error = {"error": {"message": f"status {step}", "type": "x"}}
            reply(self, int(step), error, **({"Retry-After": "0"} if step == "429" else {}))
            return
        decision = {
            "bad": {"action": "fly", "rationale": "a made-up action"},
            "run": {"action": "run", "rationale": "probe a larger boost", "params": {
                "boost": 0.5}},
            "stop": {"action": "stop", "rationale": "enough probing for tonight"},
        }[step]  # fmt: skip
        call_id = f"c{len(Flaky.served)}"
        reply(self, 200, chat_answer(body["model"], call_id, "final_result", decision, (10, 5)))

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_a_provider_in_trouble_costs_wait_cycles_never_the_night(make_lab):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lab = make_lab(max_trials=10)
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        toml = lab / "nightlab.toml"
        toml.write_text(toml.read_text().replace(
            'worker = "search"', f'worker = "openai:flaky"\nbase_url = "{url}"'))  # fmt: skip
        final = Lab(lab).run(report=lambda line: None)
    finally:
        server.shutdown()
    assert Flaky.served == Flaky.script  # the client retried 429 and 500, pydantic-ai "fly"
    assert final["end_reason"] == "the worker stopped the night: enough probing for tonight"
    assert final["trials"]["total"] == 4  # baseline ×3 and the boost
    waits = rows(
        lab, "SELECT reasons FROM decisions WHERE accepted = 0 AND reasons LIKE '%raised%'"
    )
    assert [json.loads(r[0]) for r in waits] == [["worker raised ModelServerError"]]
