"""Scripted model endpoints that speak each coding-agent CLI's real wire protocol.

A `Scripted` server listens on 127.0.0.1 (a stdlib HTTP server in a thread), records every
request it receives, and answers the CLI's model calls by playing a fixed script of file
changes: `Edit(path, old, new)` and `Write(path, text)`, then a closing message. Each CLI
gets the script in its own protocol:

- codex: OpenAI Responses API over SSE (`POST /v1/responses`), each change one call of
  codex's own `apply_patch` tool (a custom tool taking a patch), one call per turn;
- claude: Anthropic Messages API over SSE (`POST /v1/messages`), `Read` of a file before its
  `Edit` (Claude Code refuses an edit of a file it has not read), `Write` for a new file,
  one `tool_use` per turn;
- aider: OpenAI Chat Completions over SSE (`POST /v1/chat/completions`), the whole script
  in one answer in aider's "whole" edit format (a file listing per changed file).

Which turn to play is read from the request itself (how many tool results it carries), so
a CLI's retries and side requests (a title, a token count) do not shift the script.
Anything the server does not know is answered 404 and recorded; a request the script cannot
answer (no edit tool offered, a file not shown) is answered 400 and kept in `problems`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Edit:
    path: str  # relative to the CLI's working folder
    old: str
    new: str


@dataclass(frozen=True)
class Write:
    path: str
    text: str


Step = Edit | Write


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # parsed JSON, or the raw text

    def text(self) -> str:
        return json.dumps(self.body) if not isinstance(self.body, str) else self.body


@dataclass
class Scripted:
    """`with Scripted(protocol, steps) as server:` serves at `server.url` until the end."""

    protocol: str  # "codex" | "claude" | "aider"
    steps: list[Step]
    done: str = "Done: the change is made and the decision file written."
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what the script could not play

    def __post_init__(self) -> None:
        assert self.protocol in ANSWER, self.protocol
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request a connection; a body ends at close

            def do_GET(self) -> None:
                scripted._handle(self)

            def do_POST(self) -> None:
                scripted._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def model_calls(self) -> list[Request]:
        """The requests that asked the model for a turn of the script."""
        return [r for r in self.requests if r.path.split("?")[0].endswith(ENDPOINT[self.protocol])]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        size = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(size).decode(errors="replace") if size else ""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        request = Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(request)
        path = h.path.split("?")[0]
        if path.endswith("/messages/count_tokens"):  # claude, before a long prompt
            return _json(h, {"input_tokens": len(raw) // 4})
        if h.command != "POST" or not path.endswith(ENDPOINT[self.protocol]):
            return _json(h, {"error": {"type": "not_found", "message": f"no {path} here"}}, 404)
        try:
            events = ANSWER[self.protocol](self, body if isinstance(body, dict) else {})
        except AssertionError as exc:  # the CLI asked something the script cannot answer
            self.problems.append(str(exc))
            return _json(h, {"error": {"type": "invalid_request_error", "message": str(exc)}}, 400)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        for name, data in events:
            head = f"event: {name}\n" if name else ""
            h.wfile.write(f"{head}data: {json.dumps(data)}\n\n".encode())
        if self.protocol == "aider":
            h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()


ENDPOINT = {"codex": "/responses", "claude": "/messages", "aider": "/chat/completions"}
Events = list[tuple[str, dict]]


def _json(h: BaseHTTPRequestHandler, data: dict, status: int = 200) -> None:
    payload = json.dumps(data).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(payload)))
    h.end_headers()
    h.wfile.write(payload)


def _found(pattern: str, data: Any) -> Iterator[str]:
    """The first group of every match of `pattern` in the strings anywhere in `data`."""
    if isinstance(data, str):
        for match in re.finditer(pattern, data, re.IGNORECASE | re.MULTILINE):
            yield match.group(1)
    elif isinstance(data, dict | list):
        for value in data.values() if isinstance(data, dict) else data:
            yield from _found(pattern, value)


# ------------------------------------------------------------------ codex: Responses API
def _patch(step: Step) -> str:
    """codex's patch format (the grammar its apply_patch tool declares)."""
    if isinstance(step, Write):
        lines = "".join(f"+{line}\n" for line in step.text.splitlines())
        return f"*** Begin Patch\n*** Add File: {step.path}\n{lines}*** End Patch\n"
    return (
        f"*** Begin Patch\n*** Update File: {step.path}\n@@\n"
        + "".join(f"-{line}\n" for line in step.old.splitlines())
        + "".join(f"+{line}\n" for line in step.new.splitlines())
        + "*** End Patch\n"
    )


def _codex(server: Scripted, body: dict) -> Events:
    items = body.get("input") or []
    turn = sum(1 for i in items if str(i.get("type", "")).endswith("_call_output"))
    n = len(server.requests)
    if turn < len(server.steps):
        offered = {t.get("name") for t in body.get("tools", [])}
        assert "apply_patch" in offered, f"codex offered no apply_patch tool: {offered}"
        item = {"type": "custom_tool_call", "id": f"ctc_{n}", "status": "completed",
                "call_id": f"call_{n}", "name": "apply_patch",
                "input": _patch(server.steps[turn])}  # fmt: skip
        deltas: Events = []
    else:
        text = {"type": "output_text", "text": server.done, "annotations": []}
        item = {"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                "content": [text]}  # fmt: skip
        deltas = [("response.output_text.delta",
                   {"type": "response.output_text.delta", "item_id": f"msg_{n}",
                    "output_index": 0, "content_index": 0, "delta": server.done})]  # fmt: skip
    response = {"id": f"resp_{n}", "object": "response", "status": "in_progress",
                "model": body.get("model"), "output": []}  # fmt: skip
    usage = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 110}  # fmt: skip
    added = {**item, "status": "in_progress"}
    if item["type"] == "message":
        added["content"] = []
    return [
        ("response.created", {"type": "response.created", "response": response}),
        ("response.output_item.added",
         {"type": "response.output_item.added", "output_index": 0, "item": added}),
        *deltas,
        ("response.output_item.done",
         {"type": "response.output_item.done", "output_index": 0, "item": item}),
        ("response.completed",
         {"type": "response.completed",
          "response": {**response, "status": "completed", "output": [item], "usage": usage}}),
    ]  # fmt: skip


# ------------------------------------------------------------------ claude: Messages API
def _claude_calls(steps: list[Step], cwd: str) -> list[tuple[str, dict]]:
    """The tool calls that play `steps`: a file is read before its first edit."""
    calls: list[tuple[str, dict]] = []
    read: set[str] = set()
    for step in steps:
        path = f"{cwd}/{step.path}"
        if isinstance(step, Edit):
            if path not in read:
                calls.append(("Read", {"file_path": path}))
                read.add(path)
            calls.append(("Edit", {"file_path": path, "old_string": step.old,
                                   "new_string": step.new, "replace_all": False}))  # fmt: skip
        else:
            calls.append(("Write", {"file_path": path, "content": step.text}))
    return calls


def _claude(server: Scripted, body: dict) -> Events:
    messages = body.get("messages") or []
    n = len(server.requests)
    model = body.get("model", "claude")
    turn = sum(
        1
        for m in messages
        if m.get("role") == "user" and isinstance(m.get("content"), list)
        for block in m["content"]
        if block.get("type") == "tool_result"
    )
    offered = {t.get("name") for t in body.get("tools") or []}
    cwd = next(_found(r"working directory: (.+)$", body), None)  # from its system prompt
    calls = _claude_calls(server.steps, cwd.strip()) if cwd else []
    if {"Read", "Edit", "Write"} <= offered and turn < len(calls):
        name, args = calls[turn]
        block = {"type": "tool_use", "id": f"toolu_{n:04d}", "name": name, "input": {}}
        text = json.dumps(args)
        deltas = [{"type": "input_json_delta", "partial_json": text[i : i + 40]}
                  for i in range(0, len(text), 40)]  # fmt: skip
        stop = "tool_use"
    else:  # the end of the script, or a side request (no tools): text
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": server.done}]
        stop = "end_turn"
    message = {"id": f"msg_{n:04d}", "type": "message", "role": "assistant", "model": model,
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 100, "output_tokens": 1}}  # fmt: skip
    return [
        ("message_start", {"type": "message_start", "message": message}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": block}),
        *[("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
          for d in deltas],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": {"output_tokens": 10}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip


# ------------------------------------------------------------ aider: Chat Completions API
def _aider_text(server: Scripted, body: dict) -> str:
    """Every step as a whole-file listing; an edit's file is taken from the prompt, where
    aider shows the files in the chat as listings too."""
    shown = "\n".join(
        m["content"] for m in body.get("messages") or [] if isinstance(m.get("content"), str)
    )
    parts = ["I will make the change and write the decision.\n"]
    for step in server.steps:
        if isinstance(step, Write):
            text = step.text
        else:
            found = re.search(rf"^{re.escape(step.path)}\n```\n(.*?)^```$", shown, re.M | re.S)
            assert found, f"aider did not show {step.path} to the model"
            text = found.group(1).replace(step.old, step.new)
        parts.append(f"{step.path}\n```\n{text.rstrip(chr(10))}\n```\n")
    return "\n".join(parts)


def _aider(server: Scripted, body: dict) -> Events:
    n = len(server.requests)
    text = _aider_text(server, body)
    chunk = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0,
             "model": body.get("model")}  # fmt: skip
    pieces = [text[i : i + 200] for i in range(0, len(text), 200)]
    return [
        ("", {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "finish_reason": None}]}),
        *[("", {**chunk, "choices": [{"index": 0, "delta": {"content": p},
                                      "finish_reason": None}]}) for p in pieces],
        ("", {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}),
    ]  # fmt: skip


ANSWER = {"codex": _codex, "claude": _claude, "aider": _aider}
