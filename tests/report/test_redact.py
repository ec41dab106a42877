"""Secrets never reach a report: values of *_API_KEY / *_TOKEN variables are replaced."""

from __future__ import annotations

from report_nights import baseline, config, hand_store, trial

from nightlab.report import write_report
from nightlab.store.redact import redact, redact_data, secret_values

SECRET = "s3cr3t-value-for-tests-0042"


def test_secret_values_come_from_key_and_token_variables():
    env = {"OPENAI_API_KEY": SECRET, "HF_TOKEN": "hf-token-value", "HOME": "/root", "X_TOKEN": "1"}
    assert secret_values(env) == {SECRET: "OPENAI_API_KEY", "hf-token-value": "HF_TOKEN"}
    text = redact(f"key={SECRET} home=/root", secret_values(env))
    assert SECRET not in text and "[redacted OPENAI_API_KEY]" in text and "/root" in text
    assert redact_data({"a": [SECRET, 1]}, secret_values(env)) == {
        "a": ["[redacted OPENAI_API_KEY]", 1]
    }
    assert "sk-" not in redact("token sk-proj-abcdefghijklmnopqrstuvwx in a log", {})


def test_no_report_file_holds_a_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", SECRET)
    trials = [
        *baseline([1.0, 1.01, 0.99]),
        trial(4, 2.0, verdict="kept", commit="k", params={"lr": 0.01, "depth": 2},
              hypothesis=f"the model leaked {SECRET} into its hypothesis"),
        trial(5, None, status="failed", commit="f", params={"lr": 0.02, "depth": 2},
              reason=f"HTTP 401 for key {SECRET}"),
    ]  # fmt: skip
    lab = hand_store(tmp_path / "lab", trials, rejected=[f"edit mentions {SECRET}"])
    out = write_report(lab, config(), top_k=5)
    for path in out.iterdir():
        data = path.read_bytes()
        assert SECRET.encode() not in data, path.name
    assert "[redacted MY_SERVICE_API_KEY]" in (out / "final_leaderboard_top5.json").read_text()
    assert "[redacted MY_SERVICE_API_KEY]" in (out / "final_paper_report.md").read_text()

