"""Workers and notifiers from other packages, through entry points: the test plugin package
tests/plugins/nightlab_plugin_worker (installed into the venv by the Makefile) registers the
worker `steps` (`steps:0.5,2` runs boost=0.5, then boost=2, then stops), a worker whose
package fails to import (`steps-broken`), and the notifiers `record` and `record-broken`."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from nightlab import Lab, UserError
from nightlab.agents import AgentError, BaseWorker, make_worker
from nightlab.config import PluginError, load_config
from nightlab.lab import notifiers

from conftest import cli, rows

PACKAGE = "nightlab-plugin-worker"

if "steps" not in {ep.name for ep in entry_points(group="nightlab.workers")}:
    pytest.fail(f"the test plugin package {PACKAGE} is not installed: make install", pytrace=False)


def with_worker(lab: Path, spec: str) -> Path:
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace('worker = "search"', f'worker = "{spec}"'))
    return lab


@pytest.mark.slow
def test_a_night_runs_the_trials_a_plugin_worker_decides_with_its_args(make_lab):
    lab = with_worker(make_lab(max_trials=10), "steps:0.5,2")
    final = Lab(lab).run(report=lambda line: None)
    assert final["state"] == "finished"
    trials = rows(lab, "SELECT kind, params, status FROM trials ORDER BY id")
    assert [t["kind"] for t in trials] == ["baseline"] * 3 + ["trial"] * 2
    assert [json.loads(t["params"])["boost"] for t in trials[3:]] == [0.5, 2.0]
    assert all(t["status"] == "succeeded" for t in trials)
    workers = {r["worker"] for r in rows(lab, "SELECT worker FROM decisions")}
    assert "steps:0.5,2" in workers  # the plugin's own name, by which a resume counts
    assert rows(lab, "SELECT action FROM decisions ORDER BY id")[-1]["action"] == "stop"


def test_the_factory_gives_a_plugin_worker_every_attribute_the_loop_uses(make_lab):
    lab = with_worker(make_lab(), "steps:1")
    worker = make_worker("steps:1", load_config(lab), lab)
    assert isinstance(worker, BaseWorker) and worker.name == "steps:1"
    assert (worker.view, worker.slow, worker.wants_context, worker.last_usage) == (
        None, False, False, None,
    )  # fmt: skip
    assert worker.decide({}).params == {"boost": 1.0}
    bare = make_worker("steps", load_config(lab), lab)  # no ARGS: the factory gets ""
    assert bare.name == "steps:" and bare.decide({}).action == "stop"


def test_a_plugin_factory_refusing_its_args_fails_with_its_own_message(make_lab):
    lab = make_lab()
    with pytest.raises(AgentError, match=r"give boost values, e\.g\. steps:0\.5,2"):
        make_worker("steps:fast", load_config(lab), lab)


@pytest.mark.parametrize("spec", ["nobody:1", "nobody"])
def test_a_worker_nobody_registered_fails_at_start_naming_it(make_lab, spec):
    lab = with_worker(make_lab(), spec)
    with pytest.raises(AgentError) as info:
        Lab(lab).run(report=lambda line: None)
    message = str(info.value)
    assert "\n" not in message and f"'{spec}'" in message
    assert "plugin" in message and "steps" in message  # what is installed
    assert not rows(lab, "SELECT id FROM trials")


def test_a_plugin_whose_import_raises_fails_naming_its_package(make_lab):
    lab = with_worker(make_lab(), "steps-broken:1")
    with pytest.raises(PluginError) as info:
        Lab(lab).run(report=lambda line: None)
    message = str(info.value)
    assert "\n" not in message and f"package {PACKAGE}" in message
    assert "'steps-broken'" in message and "broken on purpose" in message
    assert not rows(lab, "SELECT id FROM trials")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nobody:1", "unknown worker 'nobody:1'"),
        ("steps-broken:1", f"package {PACKAGE}) failed to load"),
    ],
)
def test_the_cli_shows_the_one_line_error_and_exits_2(make_lab, spec, expected):
    lab = with_worker(make_lab(), spec)
    proc = cli("run", str(lab), check=False)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# notifiers -----------------------------------------------------------------------------------


def test_a_registered_notifier_loads_by_name():
    notifier = notifiers.load("record")()
    notifier.send("finished", "title", "the night ended")
    assert notifier.sent == [("finished", "title", "the night ended")]
    assert notifiers.GROUP == "nightlab.notifiers"


def with_notify(lab: Path, urls: str) -> Path:
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text() + f"\n[notify]\nurls = {urls}\nmin_interval_s = 0\n")
    return lab


def test_a_notifier_plugin_gets_the_nights_messages_and_its_failures_are_recorded(make_lab):
    """`[notify] urls = ["plugin:record"]`: the plugin was loadable but nightlab never called
    it. It gets every message now, through the same queue, rate limit and record."""
    from nightlab_plugin_worker import RecordingNotifier

    RecordingNotifier.log.clear()
    lab = with_notify(make_lab(max_trials=4), '["plugin:record"]')
    Lab(lab).run(report=lambda line: None)
    kinds = [kind for kind, _, _ in RecordingNotifier.log]
    assert kinds[0] == "started" and kinds[-1] == "finished", kinds
    sent = rows(lab, "SELECT data FROM events WHERE kind = 'notify_sent'")
    assert sent and all(json.loads(d)["url"] == "plugin:record" for (d,) in sent)
    RecordingNotifier.log.clear()  # a send that raises: one notify_failed, the night goes on
    from nightlab.loop.notify import Message, targets

    [target] = targets(["plugin:record"])
    assert "ConnectionError: the pager service is down" in target.send(
        Message("kept", "t", "FAIL-ME"))  # fmt: skip


@pytest.mark.parametrize(("url", "said"), [
    ("plugin:nobody", "no nightlab.notifiers plugin named 'nobody'"),
    ("plugin:record-broken", f"package {PACKAGE}"),
    ("plugin:../../etc", "write a notifier plugin as plugin:NAME"),
    ("plugin:", "write a notifier plugin as plugin:NAME"),
])  # fmt: skip
def test_a_missing_broken_or_malformed_notifier_plugin_stops_the_start(make_lab, url, said):
    lab = with_notify(make_lab(), f'["{url}"]')
    proc = cli("run", str(lab), check=False)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (lab / ".nightlab" / "trials").exists()


def test_a_missing_or_broken_notifier_is_a_one_line_user_error():
    with pytest.raises(PluginError, match="no nightlab.notifiers plugin named 'nobody'") as info:
        notifiers.load("nobody")
    assert "record" in str(info.value)  # what is installed
    with pytest.raises(PluginError, match=f"package {PACKAGE}") as info:
        notifiers.load("record-broken")
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)
