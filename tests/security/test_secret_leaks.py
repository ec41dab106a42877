"""Secrets never reach the model, MLflow or a log tail: a trial prints a key in disguise
(reversed, upper/lower-cased, hex, base64 at every alignment, split over lines), keys sit
under names an older pattern missed, and `[agents] api_key_env` names a variable whose name
looks harmless. Every test reads what a user would worry about: the text the LLM receives,
the files MLflow stores, the store's rows."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import nightlab.store.redact as redact_module
from nightlab import Lab
from nightlab.agents.llm import LLMWorker
from nightlab.agents.tools import LabView
from nightlab.config import load_config
from nightlab.store import files
from nightlab.store.redact import redact, scrub_env, secret_values, trial_env
from nightlab.tracking.mirror import Tracker

from conftest import connect, git, make_config

KEY = "sk-live-Zq9>?~x7Kp2Wm4Rt8Yb"  # its base64 holds "+" and "/": both alphabets differ
RAW = KEY.encode()
WINDOW = 12  # no run of this many characters of a disguise may survive


def disguises(secret: str, trailing: bytes = b"") -> dict[str, str]:
    """How a trial could print `secret` to get it past a plain search (base64 inside a
    longer string: with `trailing` bytes after it)."""
    raw = secret.encode()
    out = {
        "plain": secret,
        "reversed": secret[::-1],
        "upper": secret.upper(),
        "lower": secret.lower(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "split": "\n".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "split-crlf-indented": f"{secret[:9]}\r\n    {secret[9:17]}\r\n\t{secret[17:]}",
    }
    for pad in range(3):  # inside a longer base64 string, at each byte alignment
        blob = b"<" * pad + raw + trailing
        out[f"base64-{pad}"] = base64.b64encode(blob).decode()
        out[f"urlsafe-{pad}"] = base64.urlsafe_b64encode(blob).decode()
    return out


def leaked(text: str, secret: str = KEY) -> list[str]:
    """The disguises of `secret` of which `text` still holds a WINDOW-long run (whitespace
    ignored, so that pieces joined across lines count)."""
    joined = "".join(text.split())
    found = []
    for name, shown in disguises(secret).items():
        plain = "".join(shown.split())
        if any(plain[i : i + WINDOW] in joined for i in range(len(plain) - WINDOW + 1)):
            found.append(name)
    return found


def hostile_log() -> str:
    lines = ["epoch 1 loss=0.9", "epoch 2 loss=0.5"]
    for name, shown in disguises(KEY, b"> and more bytes").items():
        lines += [f"debug {name}:", shown]
    return "\n".join([*lines, "epoch 3 loss=0.25", "Traceback: HTTP 401"]) + "\n"


@pytest.fixture(autouse=True)
def no_registered_names(monkeypatch):
    """Each test starts with no variable registered as secret by an earlier one."""
    monkeypatch.setattr(redact_module, "_names", set(), raising=False)


def test_the_key_has_the_disguises_it_claims():
    both = [disguises(KEY)[f"{a}-0"] for a in ("base64", "urlsafe")]
    assert both[0] != both[1] and not leaked("nothing here")
    assert leaked(hostile_log()) == list(disguises(KEY))


NAMES = """AWS_SECRET_ACCESS_KEY AWS_ACCESS_KEY_ID AWS_SESSION_TOKEN AZURE_OPENAI_KEY OPENAI_KEY
OPENAI_API_KEY ANTHROPIC_API_KEY PGPASSWORD MYSQL_PWD MYSQL_ROOT_PASSWORD DATABASE_URL
REDIS_URL GITHUB_PAT GH_TOKEN HF_TOKEN HUGGING_FACE_HUB_TOKEN KAGGLE_KEY WANDB_API_KEY
DJANGO_SECRET_KEY JWT_SECRET CLIENT_SECRET API_KEY APIKEY TOKEN PASSWORD SMTP_PASS
DB_PASSWD SSH_PASSPHRASE GOOGLE_APPLICATION_CREDENTIALS SERVICE_CREDS SENTRY_DSN
AZURE_STORAGE_CONNECTION_STRING MONGO_CONN_STR NPM_AUTH SECRET_KEY_BASE""".split()
ORDINARY = """PATH HOME PWD OLDPWD USER LANG TOKENIZERS_PARALLELISM CUDA_VISIBLE_DEVICES
SSH_AUTH_SOCK PYTHONPATH OMP_NUM_THREADS KEYBOARD_LAYOUT BYPASS_CACHE MLFLOW_TRACKING_URI""".split()


@pytest.mark.parametrize("name", NAMES)
def test_secret_variables_are_scrubbed_from_trials_and_redacted(name, monkeypatch):
    value = f"v4lue-of-{name.lower()}-{len(name)}"
    monkeypatch.setenv(name, value)
    assert name not in scrub_env(os.environ)
    shown = redact(f"connecting with {value} ...")
    assert value not in shown and f"[redacted {name}]" in shown


def test_ordinary_variables_stay_and_are_not_blanked(monkeypatch):
    values = {name: f"ordinary-{name.lower()}" for name in ORDINARY}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    env = scrub_env(os.environ)
    text = " ".join(values.values())
    assert all(env[name] == value for name, value in values.items())
    assert redact(text) == text


def test_short_values_are_caught_verbatim_only():
    secrets = secret_values({"A_TOKEN": "abc123x", "B_TOKEN": "12345"})
    assert redact("t=abc123x", secrets) == "t=[redacted A_TOKEN]"
    assert redact("x123cba 12345 ABC123X", secrets) == "x123cba 12345 ABC123X"


def real_view(trial_dir: Path) -> LabView:
    """A LabView reading trial logs the way the loop's does (files.tail, 1 MiB)."""
    return LabView(
        files=lambda: ["train.py"],
        read=lambda p: f"API = '{KEY}'  # the agent pasted the key\n",
        editable=["train.py"],
        leaderboard=lambda k: [{"trial": 1, "hypothesis": f"key {KEY[::-1]} helps"}],
        trial_file=lambda t, n: files.tail(trial_dir / n, max_bytes=1 << 20),
    )


def trial_folder(root: Path, log: str) -> Path:
    folder = root / "trials" / "1"
    folder.mkdir(parents=True)
    (folder / "stdout.log").write_text(log)
    (folder / "stderr.log").write_text(f"ValueError: bad key {KEY.upper()}\n")
    (folder / "diff.patch").write_text(f"+API = '{base64.b64encode(RAW).decode()}'\n")
    return folder


def test_every_tool_answer_hides_the_key_in_every_disguise(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    view = real_view(trial_folder(tmp_path, hostile_log()))
    answers = {
        "tail_log": view.tail_log(1, 200),
        "read_file": view.read_file("train.py"),
        "grep": view.grep("API"),
        "show_leaderboard": view.show_leaderboard(),
        "trial_diff": view.trial_diff(1),
    }
    for tool, answer in answers.items():
        assert leaked(answer) == [], tool
    assert "epoch 3 loss=0.25" in answers["tail_log"]  # the log is still useful
    assert "[redacted OPENAI_API_KEY]" in answers["tail_log"]


def test_a_tail_that_starts_inside_a_split_key_shows_none_of_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    pieces = [KEY[i : i + 2] for i in range(0, len(KEY), 2)]  # 14 lines of 2 characters
    view = real_view(trial_folder(tmp_path, "\n".join(["start", *pieces, "done"]) + "\n"))
    answer = view.tail_log(1, 5)  # the tail begins in the middle of the key
    assert leaked(answer) == [] and "".join(pieces[-3:]) not in "".join(answer.split())


def the_model_reads_everything(seen: list[str]):
    """A model that calls every tool once, records every message it is given, then stops."""
    calls = [
        ("_tail_log", {"trial": 1, "lines": 200}),
        ("_read_file", {"path": "train.py"}),
        ("_grep", {"text": "API"}),
        ("_leaderboard", {}),
        ("_trial_diff", {"trial": 1}),
        ("_read_file", {"path": f"../{KEY}.py"}),  # an error answer quotes its input
    ]

    def model(messages, info: AgentInfo) -> ModelResponse:
        for part in (p for m in messages for p in m.parts):
            content = getattr(part, "content", "")
            seen.append(content if isinstance(content, str) else json.dumps(content))
        seen.append(info.instructions or "")
        done = sum(p.part_kind == "tool-return" for m in messages for p in m.parts)
        if done < len(calls):
            return ModelResponse(parts=[ToolCallPart(*calls[done])])
        answer = {"action": "stop", "rationale": "read everything"}
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])

    return model


def test_the_model_never_receives_the_agents_key(tmp_path, make_lab, monkeypatch):
    """`[agents] api_key_env` names a harmless-looking variable: its value is still hidden
    from the prompt (the last trial's log tail) and from every tool answer."""
    monkeypatch.setenv("LLM_SERVER", KEY)
    lab = make_lab()
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text().replace("[agents]\n", '[agents]\napi_key_env = "LLM_SERVER"\n')
    )
    seen: list[str] = []
    model = FunctionModel(the_model_reads_everything(seen))
    worker = LLMWorker("function:leaky", load_config(lab), lab, model=model)
    worker.view = real_view(trial_folder(tmp_path, hostile_log()))
    last = {"id": 1, "status": "failed", "reason": "crash", "log_tail": hostile_log()}
    ctx = {"objective": {"metric": "score", "direction": "maximize"}, "brief": "Max score."}
    assert worker.decide({**ctx, "last": last}).action == "stop"
    prompt = "\n".join(seen)
    assert leaked(prompt) == []
    assert "epoch 3 loss=0.25" in prompt and "[redacted LLM_SERVER]" in prompt


def test_a_trial_launch_makes_the_agents_key_a_secret_of_the_log_tails(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_SERVER", KEY)
    cfg = make_config(agents={"api_key_env": "LLM_SERVER"})
    assert "LLM_SERVER" not in trial_env(cfg)  # what every launch does first
    folder = trial_folder(tmp_path, hostile_log())
    assert leaked(files.trial_logs_tail(folder, 400)) == []


def trial_record(trial_id: int, history: list[dict]) -> dict:
    return {
        "id": trial_id, "trace_id": f"t{trial_id}", "kind": "trial", "status": "failed",
        "verdict": None, "dimension": None, "hypothesis": f"uses {KEY[::-1]}",
        "commit": "abc", "seed": 0, "started_at": 1.0, "ended_at": 2.0,
        "params": {"lr": 0.1, "note": KEY.lower()}, "history": history,
    }  # fmt: skip


def test_mlflow_gets_redacted_copies_of_the_trial_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", KEY)
    folder = trial_folder(tmp_path, hostile_log())
    (folder / "params.json").write_text(json.dumps({"note": KEY}))
    raw_before = (folder / "stdout.log").read_bytes()
    artifacts = tmp_path / "mlartifacts"
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "lab", artifacts, "n1")
    run_id = tracker.log_trial(trial_record(1, [{"name": "loss", "value": 0.5, "step": 1}]), folder)
    stored = [p for p in artifacts.rglob("*") if p.is_file()]
    names = {p.name for p in stored}
    assert {"stdout.log", "stderr.log", "diff.patch", "params.json"} <= names
    for path in stored:
        assert leaked(path.read_text()) == [], path.name
    assert "epoch 3 loss=0.25" in (next(p for p in stored if p.name == "stdout.log")).read_text()
    assert (folder / "stdout.log").read_bytes() == raw_before  # the lab keeps its own log
    data = tracker._connect().get_run(run_id).data
    assert leaked(json.dumps([data.params, data.tags])) == []


TRIAL = """
import base64, json, os, sys
key = os.environ["LLM_SERVER"]
print("reversed", key[::-1]); print("b64", base64.b64encode(b"x" + key.encode()).decode())
for i in range(0, len(key), 5):
    print(key[i:i + 5])
print("score=1", flush=True)
"""


@pytest.mark.slow
def test_a_night_keeps_a_disguised_agents_key_out_of_store_mlflow_output(make_lab, monkeypatch):
    """The agents' key, given to trials on purpose (`pass_env`) and printed in disguise,
    reaches neither the store, the MLflow artifacts (written by the mirror process) nor
    the loop's output."""
    monkeypatch.setenv("LLM_SERVER", KEY)
    lab = make_lab(trial=TRIAL, max_trials=3, tracking=True)
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace("[trial]\n", '[trial]\npass_env = ["LLM_SERVER"]\n')
        .replace("[agents]\n", '[agents]\napi_key_env = "LLM_SERVER"\n')
    )
    git(lab, "add", "-A")
    lines: list[str] = []
    Lab(lab).run(report=lines.append)
    conn = connect(lab)
    try:
        db = "\n".join(conn.iterdump())
        (logged,) = conn.execute("SELECT COUNT(*) FROM trials WHERE mlflow_run_id IS NOT NULL")
    finally:
        conn.close()
    assert logged[0] == 3
    assert leaked(db) == [] and leaked("\n".join(lines)) == []
    uploaded = [p for p in (lab / ".nightlab").rglob("stdout.log") if "mlartifacts" in p.parts]
    assert len(uploaded) == 3
    for path in uploaded:
        assert leaked(path.read_text()) == [] and "score=1" in path.read_text()
