"""A stand-in coding-agent CLI that answers by rules: argv is the prompt file, the decision
file and a JSON file of rules. The first rule whose `when` holds is followed: its `edits`
(search → replace in the working copy's files, made whole-file edits by nightlab) and its
`decision`. Deterministic: what it does depends only on the code it was given and the prompt.

`when` keys: `file` + `has` (the file of the working copy holds the text), `prompt_has`,
`prompt_lacks` (the prompt holds, or lacks, the text)."""

import json
import sys
from pathlib import Path

prompt_file, decision_file, rules_file = sys.argv[1:4]
prompt = Path(prompt_file).read_text()


def holds(when: dict) -> bool:
    if "file" in when and when["has"] not in Path(when["file"]).read_text():
        return False
    if "prompt_has" in when and when["prompt_has"] not in prompt:
        return False
    return not ("prompt_lacks" in when and when["prompt_lacks"] in prompt)


rule = next(r for r in json.loads(Path(rules_file).read_text()) if holds(r.get("when", {})))
for name, search, replace in rule.get("edits", []):
    text = Path(name).read_text()
    assert text.count(search) == 1, (name, search)
    Path(name).write_text(text.replace(search, replace))
Path(decision_file).write_text(json.dumps(rule["decision"]))
