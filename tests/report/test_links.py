"""The report's numbers and links: floats rounded as `nightlab leaderboard` rounds them, and
per candidate its MLflow run (only an http(s) `[tracking] ui_url`), its logs and its diff as
relative links that cannot leave the lab's state folder."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from report_nights import baseline, config, hand_store, real_lab, section, trial

from nightlab.config import ConfigError, load_config
from nightlab.report import write_report
from nightlab.report.data import ReportError
from nightlab.report.doc import Linked, inline_html
from nightlab.report.links import state_file_link
from nightlab.store import fmt
from nightlab.tracking.ui import run_url

from conftest import cli

LONG = 0.123456789
DECISIONS = [
    {"action": "run", "rationale": "a long float", "params": {"boost": LONG},
     "hypothesis": "boost lifts the score", "dimension": "optimization"},
    {"action": "run", "rationale": "a code change", "dimension": "model_arch",
     "edits": [{"file": "train.py", "search": "EXTRA = 0.0", "replace": "EXTRA = 0.3"}]},
]  # fmt: skip
RUN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> dict:
    lab = real_lab(tmp_path_factory.mktemp("links"), DECISIONS)
    out = write_report(lab, load_config(lab), top_k=5)
    return {"lab": lab, "out": out, "paper": (out / "final_paper_report.md").read_text(),
            "html": (out / "report.html").read_text(),
            "board": (out / "final_leaderboard_top5.md").read_text()}  # fmt: skip


def test_floats_read_as_the_terminal_shows_them(night, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the whole table on one line per row
    rows = json.loads(cli("leaderboard", str(night["lab"]), "--json").stdout)
    terminal = cli("leaderboard", str(night["lab"])).stdout
    assert rows
    for r in rows:
        shown = fmt.value(r["objective"])  # what `nightlab leaderboard` prints
        assert shown in terminal
        assert shown in night["paper"] and shown in night["html"] and shown in night["board"]
    assert "boost=0.123" in terminal
    for text in (night["paper"], night["html"], night["board"]):
        assert "boost=0.123" in text
        assert "0.123456789" not in text and "0.1234" not in text  # the raw and 4-digit forms
        longer = [m for m in re.findall(r"\d+\.\d+", text)
                  if len(m.replace(".", "").lstrip("0")) > 4]  # fmt: skip
        assert not longer  # no number with more significant digits than the terminal's


def test_each_candidate_links_its_logs_and_its_diff(night):
    results = section(night["paper"], "Results")
    hrefs = re.findall(r"\]\((\.\./\.\./trials/\d+/[\w.]+)\)", results)
    assert any(h.endswith("/stdout.log") for h in hrefs)
    assert any(h.endswith("/diff.patch") for h in hrefs)  # the code change's
    for h in hrefs:  # every link resolves, from the report's folder, to a file of the lab
        target = (night["out"] / h).resolve()
        assert target.is_file() and target.is_relative_to(night["lab"] / ".nightlab" / "trials")
    html_hrefs = re.findall(r'<a href="([^"]+)"', night["html"])
    assert set(hrefs) <= set(html_hrefs)  # the same links are live in the HTML
    assert all(h.startswith("../../trials/") for h in html_hrefs)  # no ui_url: no MLflow link
    assert "](../../trials/" in night["board"]


def test_a_missing_diff_patch_is_written_from_git_beside_the_report(night):
    lab, out = night["lab"], night["out"]
    linked = re.findall(r"\(\.\./\.\./trials/(\d+)/diff\.patch\)", night["paper"])
    assert linked  # the code change's candidate
    trial_id = linked[0]
    (lab / ".nightlab" / "trials" / trial_id / "diff.patch").unlink()
    out = write_report(lab, load_config(lab), top_k=5)
    patch = out / "diffs" / f"trial-{trial_id}.patch"
    assert "EXTRA = 0.3" in patch.read_text()
    assert f"](diffs/trial-{trial_id}.patch)" in (out / "final_paper_report.md").read_text()
    assert f'href="diffs/trial-{trial_id}.patch"' in (out / "report.html").read_text()


def _mlflow_night(tmp_path: Path, ui_url: str) -> tuple[Path, str]:
    trials = [*baseline([1.0, 1.01, 0.99]),
              trial(4, 1.2, params={"lr": 0.01, "depth": 2}, mlflow_run_id=RUN)]  # fmt: skip
    lab = hand_store(tmp_path / "lab", trials)
    cfg = config().model_copy(
        update={"tracking": config().tracking.model_copy(update={"ui_url": ui_url})}
    )  # model_copy skips validation: as if a check upstream had missed it
    out = write_report(lab, cfg)
    return out, (out / "report.html").read_text() + (out / "final_paper_report.md").read_text()


def test_the_mlflow_run_is_linked_when_ui_url_is_set(tmp_path):
    _, text = _mlflow_night(tmp_path, "http://127.0.0.1:5000/")
    assert f'href="http://127.0.0.1:5000/#/runs/{RUN}"' in text
    assert f"[MLflow](http://127.0.0.1:5000/#/runs/{RUN})" in text


@pytest.mark.parametrize(
    "bad", ["javascript:alert(1)//http://x", "JaVaScRiPt:alert(1)", "data:text/html,hi",
            'http://x/"onmouseover="alert(1)', "file:///etc/passwd"],
)  # fmt: skip
def test_a_ui_url_that_is_not_http_never_becomes_a_link(tmp_path, bad):
    assert run_url(bad, RUN) is None
    _, text = _mlflow_night(tmp_path, bad)
    assert "MLflow](" not in text
    assert not re.search(r'href="(?!\.\./\.\./trials/|diffs/)', text)
    assert "onmouseover" not in text.split("<body>")[-1].replace("&#34;", "")


def test_the_config_refuses_a_javascript_ui_url(tmp_path):
    (tmp_path / "nightlab.toml").write_text(
        '[lab]\nname = "x"\n[objective]\nmetric = "m"\n[trial]\ncommand = "true"\n'
        '[tracking]\nui_url = "javascript:alert(1)"\n'
    )
    with pytest.raises(ConfigError, match="ui_url"):
        load_config(tmp_path)


def test_a_link_cannot_leave_the_state_folder(tmp_path):
    state = tmp_path / "lab" / ".nightlab"
    out = state / "reports" / "n1"
    out.mkdir(parents=True)
    (state / "trials" / "1").mkdir(parents=True)
    (state / "trials" / "1" / "stdout.log").write_text("ok\n")
    assert state_file_link(state, "trials/1/stdout.log", out) == "../../trials/1/stdout.log"
    secret = tmp_path / "secret.txt"
    secret.write_text("do not link me\n")
    assert state_file_link(state, "../secret.txt", out) is None  # `..` out of the state
    assert state_file_link(state, "trials/1/../../../secret.txt", out) is None
    (state / "trials" / "2").mkdir()
    os.symlink(secret, state / "trials" / "2" / "stdout.log")  # a log that is a symlink
    assert state_file_link(state, "trials/2/stdout.log", out) is None
    os.symlink(tmp_path, state / "trials" / "3")  # a trial folder that is a symlink
    (tmp_path / "stdout.log").write_text("elsewhere\n")
    assert state_file_link(state, "trials/3/stdout.log", out) is None
    (state / "trials" / "1" / "stderr.log").write_text("")
    assert state_file_link(state, "trials/1/stderr.log", out) is None  # empty: nothing to read


def test_a_symlinked_log_gets_no_link_in_the_report(tmp_path):
    trials = [*baseline([1.0, 1.01, 0.99]), trial(4, 1.2, params={"lr": 0.01, "depth": 2})]
    lab = hand_store(tmp_path / "lab", trials)
    folder = lab / ".nightlab" / "trials"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "stdout.log").write_text("the baseline's log\n")
    (folder / "4").mkdir()
    os.symlink("/etc/passwd", folder / "4" / "stdout.log")
    text = (write_report(lab, config()) / "final_paper_report.md").read_text()
    assert "[stdout](../../trials/1/stdout.log)" in text
    assert "trials/4/stdout.log" not in text


def test_only_the_reports_own_link_shapes_render_as_links():
    assert "<a " in inline_html(Linked([("log", "../../trials/3/stdout.log")]))
    assert "<a " not in inline_html("[log](../../trials/3/stdout.log)")  # text: never a link
    for text in ("[x](javascript:alert(1))", "[x](../../../etc/passwd)",
                 "[x](../../trials/3/../../../../etc/passwd)", "[x](/etc/passwd)"):  # fmt: skip
        assert "<a " not in inline_html(text), text
        assert "<a " not in inline_html(Linked([("x", text[4:-1])])), text


def test_a_symlinked_diffs_folder_is_refused_not_written_through(night, tmp_path):
    lab, out = night["lab"], night["out"]
    linked = re.findall(r"\(\.\./\.\./trials/(\d+)/diff\.patch\)", night["paper"])
    (lab / ".nightlab" / "trials" / linked[0] / "diff.patch").unlink(missing_ok=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(out / "diffs", ignore_errors=True)
    os.symlink(elsewhere, out / "diffs")
    with pytest.raises(ReportError, match="symlink"):
        write_report(lab, load_config(lab), top_k=5)
    assert not list(elsewhere.iterdir())
    (out / "diffs").unlink()
