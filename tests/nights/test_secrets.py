"""Secrets: agents' keys stay out of trials; what a trial prints is redacted from the
record (store, workpad files, loop output)."""

from __future__ import annotations

import json

from nightlab import Lab

from conftest import connect, git


def test_trials_get_no_agent_keys_and_secrets_never_reach_the_record(make_lab, monkeypatch):
    """An agent's key is not in a trial's environment; a secret a trial is given on purpose
    (`pass_env`) and prints is redacted from the store, the prompt files and the output."""
    key, token = "sk-test-" + "k" * 24, "tok-" + "t" * 20
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("HUB_TOKEN", token)
    monkeypatch.setenv("MY_SERVER_KEY", "server-" + "s" * 12)
    lab = make_lab(decisions=[{"action": "run", "rationale": "see what the trial sees",
                               "params": {"boost": 0.5}}], max_trials=4)  # fmt: skip
    (lab / "train.py").write_text(
        "import json, os, sys\n"
        "seen = sorted(k for k in os.environ if k in "
        "('OPENAI_API_KEY', 'HUB_TOKEN', 'MY_SERVER_KEY'))\n"
        "open(os.environ['NIGHTLAB_ARTIFACTS'] + '/seen.json', 'w').write(json.dumps(seen))\n"
        "p = json.load(open(os.environ['NIGHTLAB_PARAMS']))\n"
        "if p.get('boost'): sys.exit('upload failed with token ' + os.environ['HUB_TOKEN'])\n"
        "print('score=1')\n"
    )
    toml = lab / "nightlab.toml"
    toml.write_text(
        toml.read_text()
        .replace("[trial]\n", '[trial]\npass_env = ["HUB_TOKEN"]\n')
        .replace("[agents]\n", '[agents]\napi_key_env = "MY_SERVER_KEY"\n')
    )
    git(lab, "add", "-A")
    lines: list[str] = []
    Lab(lab).run(report=lines.append)
    seen = list((lab / ".nightlab" / "trials").glob("*/out/artifacts/seen.json"))
    assert len(seen) == 4 and all(json.loads(f.read_text()) == ["HUB_TOKEN"] for f in seen)
    conn = connect(lab)
    try:
        db = "\n".join(conn.iterdump())  # every row of every table
    finally:
        conn.close()
    assert "upload failed with token [redacted HUB_TOKEN]" in db  # the failure, readable
    assert token not in db and key not in db
    for path in (lab / ".nightlab" / "artifacts").iterdir():
        assert token not in path.read_text(), path
    assert not any(token in line for line in lines)
