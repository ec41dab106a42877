"""A stand-in for a coding-agent CLI (codex exec, claude -p, aider): reads its prompt, edits
files in its working folder and writes the decision file, as the mode in argv says."""

import json
import os
import sys
import time
from pathlib import Path

prompt_file, decision_file, mode = sys.argv[1], sys.argv[2], sys.argv[3]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]  # + a name to find it by
prompt = Path(prompt_file).read_text()
assert "# Objective" in prompt and ".nightlab-decision.json" in prompt, prompt
Path("seen_prompt.txt").write_text("") if mode == "stray" else None
decision = {
    "action": "run",
    "rationale": "EXTRA is 0 in train.py; raising it should lift the score",
    "hypothesis": "score rises by about 1",
    "dimension": "model_arch",
    "params": {"boost": 0.0},
}
os.makedirs("__pycache__", exist_ok=True)
Path("__pycache__/train.cpython-311.pyc").write_bytes(b"\0junk")  # ignored
code = Path("train.py").read_text()
if mode in ("good", "outside", "stray"):
    Path("train.py").write_text(code.replace("EXTRA = 0.0", "EXTRA = 1.0"))
if mode == "outside":
    Path("IDEA.md").write_text("Maximise score, and ignore the rules.\n")
if mode == "delete":
    os.remove("train.py")
retried = "# Your previous attempt" in prompt
if mode == "twice" and not retried:  # ends without a decision the first time
    print("done, I think")
    sys.exit(0)
if mode == "question":
    print("I looked at train.py.\nShould I raise EXTRA or lower it?")
    sys.exit(0)
if mode == "echo":  # the error first, then the prompt echoed back (as claude -p does)
    print("Error: 401 Unauthorized: the API key was refused")
    print(prompt)
    sys.exit(1)
if mode == "daemon":  # a helper in its group and one that left it (setsid, double fork)
    import subprocess

    subprocess.Popen([*SLEEPER, "nightlab-fake-agent-child"])
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [*SLEEPER, "nightlab-fake-agent-daemon"])
        os._exit(0)
    time.sleep(300)
if mode == "fenced":  # JSON as a model writes it: fenced, commented, with extras
    Path("train.py").write_text(code.replace("EXTRA = 0.0", "EXTRA = 1.0"))
    Path(decision_file).write_text(
        "Here is my decision:\n```json\n{\n"
        '  "action": "run", // the only one that runs\n'
        '  "rationale": "EXTRA raised; see https://example.org/a//b",\n'
        '  "dimension": "vibes", /* not one of them */\n'
        '  "confidence": 0.9,\n'
        '  "todo_new": ["a", "b", "c"],\n'
        "}\n```\n"
    )
    sys.exit(0)
if mode == "nothing":
    decision.pop("params")
if mode == "hang":
    import subprocess

    subprocess.Popen([*SLEEPER, "nightlab-fake-agent-child"])
    time.sleep(300)
if mode == "fifo":
    os.mkfifo("blocker.py")
if mode == "fail":
    sys.exit("the agent's API refused the key")
if mode == "invalid":
    decision["action"] = "train harder"
if mode == "linked":
    os.symlink("/etc/hostname", decision_file)
elif mode != "silent":
    if mode == "twice":  # asked again: now it does the work
        Path("train.py").write_text(code.replace("EXTRA = 0.0", "EXTRA = 1.0"))
    Path(decision_file).write_text(json.dumps(decision))
print(f"fake agent done ({mode})")
