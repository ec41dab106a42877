"""Notifications ([notify]): real nights of the tiny lab send through Apprise to a local HTTP
receiver (notify_receiver.py); each event arrives once, a slow or dead receiver does not slow
the night, no secret leaves, a URL Apprise cannot read stops the night before it starts, and
`nightlab notify-test` says per URL whether it was delivered."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from notify_receiver import Receiver, dead_url, kind_of, notify_toml

from nightlab import Lab
from nightlab.loop import notify
from nightlab.loop.night import NightError

from conftest import cli, rows, status

pytestmark = pytest.mark.slow

KEPT = {"action": "run", "rationale": "a planted improvement of +0.5 in boost",
        "hypothesis": "a bigger boost lifts the score", "params": {"boost": 0.5}}  # fmt: skip
NOISE = {"action": "run", "rationale": "a change inside the noise band, to be discarded",
         "params": {"boost": 0.51}}  # fmt: skip
CRASHES = [{"action": "run", "rationale": f"trial {i}: it crashes on purpose, to stall the night",
            "params": {"mode": "crash", "sleep": i / 100}} for i in range(5)]  # fmt: skip


def night(lab, **options):
    return Lab(lab).run(report=lambda line: None, **options)


def sent(lab, kind="notify_sent"):
    return [json.loads(r["data"]) for r in rows(lab, "SELECT data FROM events WHERE kind=? "
                                                "ORDER BY id", kind)]  # fmt: skip


def test_a_normal_night_sends_started_kept_budget_finished_once_each(make_lab):
    with Receiver() as r:
        lab = make_lab(decisions=[KEPT, NOISE], max_trials=5, toml_extra=notify_toml(r.url))
        night(lab)
        by_kind = {kind_of(m["title"]): m for m in r.messages()}
        assert sorted(r.kinds()) == ["budget", "finished", "kept", "started"]

    kept = by_kind["kept"]
    assert kept["title"] == "tiny: trial 4 kept (+0.49 score)" and kept["type"] == "success"
    assert "a bigger boost lifts the score" in kept["message"]  # the change
    assert "more than the threshold" in kept["message"] and "nightlab adopt 4" in kept["message"]
    assert "max_trials=5 reached" in by_kind["budget"]["title"]
    done = by_kind["finished"]["message"]
    assert "Best: trial 4, score 1.49" in done and "+0.49" in done and "1 kept of 5" in done
    assert "nightlab report" in done  # [report] auto = false in the tiny lab: how to get one
    # every send is recorded: the event, the service, the URL (nothing else was asked)
    recorded = sent(lab)
    assert [e["event"] for e in recorded] == ["started", "kept", "budget", "finished"]
    assert {e["url"] for e in recorded} == {r.url} and {e["service"] for e in recorded} == {"JSON"}
    assert sent(lab, "notify_failed") == []


def test_the_finished_message_names_the_report(make_lab):
    with Receiver() as r:
        lab = make_lab(decisions=[KEPT], max_trials=4, toml_extra=notify_toml(r.url))
        text = (lab / "nightlab.toml").read_text().replace("auto = false", "auto = true")
        (lab / "nightlab.toml").write_text(text)
        night(lab)
        done = [m for m in r.messages() if kind_of(m["title"]) == "finished"]
    assert len(done) == 1 and "final_paper_report.md" in done[0]["message"]
    assert str(lab / ".nightlab") in done[0]["message"]


def test_only_the_chosen_events_are_sent(make_lab):
    with Receiver() as r:
        toml = notify_toml(r.url, events=["kept", "finished"])
        lab = make_lab(decisions=[KEPT], max_trials=4, toml_extra=toml)
        night(lab)
        assert r.kinds() == ["kept", "finished"]


def test_a_failing_baseline_sends_its_error_and_the_fix_once(make_lab):
    with Receiver() as r:
        lab = make_lab(max_trials=5, toml_extra=notify_toml(r.url))
        (lab / "train.py").write_text("raise SystemExit('no data here: /data/digits missing')\n")
        with pytest.raises(NightError, match="baseline trial 1 failed"):
            night(lab)
        assert r.kinds() == ["started", "baseline_failed"]  # no `finished` after it
        failed = r.messages()[1]
    assert failed["type"] == "failure"
    assert "no data here: /data/digits missing" in failed["message"]  # its last lines
    assert "nightlab reset" in failed["message"] and "python train.py" in failed["message"]


def test_a_crashing_loop_sends_crashed_once(make_lab, monkeypatch):
    from nightlab.loop.slots import Slots

    def broken(self, *args, **kwargs):
        raise RuntimeError("the loop broke on purpose")

    monkeypatch.setattr(Slots, "wait", broken)  # while the first trial runs
    with Receiver() as r:
        lab = make_lab(max_trials=5, toml_extra=notify_toml(r.url))
        with pytest.raises(RuntimeError, match="on purpose"):
            night(lab)
        assert r.kinds() == ["started", "crashed"]
        crashed = r.messages()[1]
    assert crashed["title"] == "tiny: nightlab crashed (RuntimeError)"
    assert "RuntimeError: the loop broke on purpose" in crashed["message"]
    assert f"nightlab run {lab}" in crashed["message"]  # what to do
    assert status(lab)["state"] == "crashed"


def test_the_time_budget_sends_budget_once(make_lab, monkeypatch):
    monkeypatch.setenv("TEST_TRIAL_SLEEP", "0.3")  # each trial: the search worker never stops
    with Receiver() as r:
        lab = make_lab(max_trials=100, toml_extra=notify_toml(r.url))
        final = night(lab, hours=1.5 / 3600)
        assert final["end_reason"] == "time budget reached"
        assert Counter(r.kinds())["budget"] == 1
        budget = next(m for m in r.messages() if kind_of(m["title"]) == "budget")
    assert budget["title"] == "tiny: limit reached: time budget reached"
    assert "--hours" in budget["message"]


def test_a_stall_is_sent_once_not_every_cycle(make_lab):
    with Receiver() as r:
        lab = make_lab(decisions=CRASHES, max_trials=8, toml_extra=notify_toml(r.url))
        text = (lab / "nightlab.toml").read_text() + "\n[repair]\nenabled = false\n"
        (lab / "nightlab.toml").write_text(text)
        night(lab)
        assert Counter(r.kinds()) == {"started": 1, "stalled": 1, "budget": 1, "finished": 1}
        stalled = next(m for m in r.messages() if kind_of(m["title"]) == "stalled")
    assert "the last 3 trials failed" in stalled["message"]
    assert "nightlab stop" in stalled["message"]  # what to do
    assert len(rows(lab, "SELECT id FROM trials WHERE status='failed'")) == 5  # still stalled


def test_within_min_interval_messages_are_held_and_go_out_with_finished(make_lab):
    with Receiver() as r:
        lab = make_lab(decisions=[KEPT, NOISE], max_trials=5,
                       toml_extra=notify_toml(r.url, min_interval_s=3600))  # fmt: skip
        night(lab)
        assert r.kinds() == ["started", "finished"]  # kept and budget were held...
        done = r.messages()[1]
    assert done["title"] == "tiny: night finished (+2 more)"  # ...and counted, and listed
    assert "Also since the last message:" in done["message"]
    assert "trial 4 kept" in done["message"] and "limit reached" in done["message"]
    assert [(e["event"], e.get("coalesced")) for e in sent(lab)] == [
        ("started", None), ("finished", ["kept", "budget"])]  # fmt: skip


def timed_night(make_lab, name, *urls):
    toml = notify_toml(*urls) if urls else ""
    lab = make_lab(name=name, decisions=[KEPT, NOISE], max_trials=5, toml_extra=toml)
    t0 = time.monotonic()
    night(lab)
    total = time.monotonic() - t0
    run = rows(lab, "SELECT started_at, ended_at FROM runs")[0]
    return lab, total, run["ended_at"] - run["started_at"]


def test_a_slow_or_dead_receiver_does_not_slow_the_night(make_lab, capsys):
    _, plain, plain_loop = timed_night(make_lab, "plain")
    with Receiver(delay=5) as slow:
        slow_lab, slow_total, slow_loop = timed_night(make_lab, "slow", slow.url)
    dead_lab, dead_total, dead_loop = timed_night(make_lab, "dead", dead_url())
    with capsys.disabled():
        print(f"\nnight wall time: no notify {plain:.2f}s (loop {plain_loop:.2f}s); slow "
              f"receiver {slow_total:.2f}s (loop {slow_loop:.2f}s); dead receiver "
              f"{dead_total:.2f}s (loop {dead_loop:.2f}s)")  # fmt: skip
    # the loop's own work (open → run closed) is not held up by the sends
    assert slow_loop < plain_loop + 2 and dead_loop < plain_loop + 2
    # the end waits FLUSH_S at most for what is still going out
    assert slow_total < plain + notify.FLUSH_S + 2 and dead_total < plain + 2
    # the dead one: every message recorded as failed, with Apprise's reason
    failed = sent(dead_lab, "notify_failed")
    assert [e["event"] for e in failed] == ["started", "kept", "budget", "finished"]
    assert all("Connection refused" in e["error"] or "onnection" in e["error"] for e in failed)
    # the slow one: none delivered in time (Apprise's 4 s read timeout), each one recorded
    events = sent(slow_lab) + sent(slow_lab, "notify_failed")
    assert events and all(e["event"] in ("started", "kept", "budget", "finished") for e in events)


def test_no_secret_leaves_in_a_message(make_lab, monkeypatch):
    secret = "sEcReT-0123456789-abcdefghij"
    monkeypatch.setenv("NIGHTLAB_TEST_API_KEY", secret)
    shaped = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2"  # an OpenAI-shaped key, in no variable
    leaky = dict(KEPT, hypothesis=f"a bigger boost (with key {shaped})")
    with Receiver() as r:
        lab = make_lab(decisions=[leaky], max_trials=4, toml_extra=notify_toml(r.url),
                       trial_extra='pass_env = ["NIGHTLAB_TEST_API_KEY"]')  # fmt: skip
        night(lab)
        kept = next(m for m in r.messages() if kind_of(m["title"]) == "kept")
        (lab / "train.py").write_text(
            "import os, sys\nprint('auth failed with', os.environ['NIGHTLAB_TEST_API_KEY'], "
            "file=sys.stderr)\nsys.exit(3)\n"
        )
        cli("reset", str(lab), "--yes")
        with pytest.raises(NightError):
            night(lab)
        failed = next(m for m in r.messages() if kind_of(m["title"]) == "baseline_failed")
        everything = json.dumps(r.messages())
    assert "[redacted key]" in kept["message"]
    assert "auth failed with [redacted NIGHTLAB_TEST_API_KEY]" in failed["message"]
    assert secret not in everything and shaped not in everything


def test_a_url_apprise_cannot_read_stops_the_night_before_it_starts(make_lab):
    token = "xoxb-1234567890-abcdefghijklmnop"
    lab = make_lab(toml_extra=notify_toml("json://127.0.0.1:9/ok", f"slak://{token}/C0/#x"))
    with pytest.raises(notify.NotifyError) as info:
        night(lab)
    message = str(info.value)
    assert "[notify] urls entry 2 (slak://…)" in message and "did you mean 'slack'" in message
    assert token not in message
    assert not (lab / ".nightlab" / "state.db").exists()  # nothing ran
    # a known service whose URL is malformed: named, with its documentation page
    lab2 = make_lab(name="lab2", toml_extra=notify_toml("slack://T1B2C3D4E5F6G7"))
    failed = cli("run", str(lab2), check=False)
    assert failed.returncode == 2 and "[notify] urls entry 1 (slack://…)" in failed.stderr
    assert "Notify_slack" in failed.stderr and "T1B2C3D4E5F6G7" not in failed.stderr + failed.stdout


def test_notify_test_reports_each_url(make_lab):
    with Receiver() as r:
        lab = make_lab(toml_extra=notify_toml(r.url))
        ok = cli("notify-test", str(lab))
        assert f"{r.url}: delivered" in ok.stdout
        assert r.kinds() == ["test"] and "tiny" in r.messages()[0]["title"]
        dead = dead_url()
        lab2 = make_lab(name="lab2", toml_extra=notify_toml(r.url, dead))
        bad = cli("notify-test", str(lab2), check=False)
    assert bad.returncode == 1
    assert f"{r.url}: delivered" in bad.stdout
    assert f"{dead}: FAILED" in bad.stdout and "Connection" in bad.stdout
    assert "1 of 2 URL(s) failed" in bad.stdout


def test_notify_test_without_urls_names_the_key(make_lab):
    lab = make_lab()
    out = cli("notify-test", str(lab), check=False)
    assert out.returncode == 2 and "no [notify] urls" in out.stderr


def test_a_message_that_cannot_be_composed_never_ends_the_night(make_lab, monkeypatch, caplog):
    from nightlab.loop import notices

    def broken(*args, **kwargs):
        raise OSError("cannot compose on purpose")

    monkeypatch.setattr(notices, "_signed", broken)  # the kept message's figures
    monkeypatch.setattr(notices.Notices, "_finished", broken)  # the finished message
    with Receiver() as r:
        lab = make_lab(decisions=[KEPT], max_trials=4, toml_extra=notify_toml(r.url))
        final = night(lab)
        assert final["state"] == "finished" and r.kinds() == ["started", "budget"]
    err = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "the kept notification failed: OSError: cannot compose on purpose" in err
    assert "the ended notification failed: OSError: cannot compose on purpose" in err
    assert sent(lab, "notify_failed") == []  # what was queued still went out, and the close


def test_a_trial_kept_on_its_confirmation_runs_is_sent_once_when_judged(make_lab):
    with Receiver() as r:
        lab = make_lab(decisions=[KEPT], max_trials=4, confirm_runs=2,
                       toml_extra=notify_toml(r.url))  # fmt: skip
        night(lab)
        kept = [m for m in r.messages() if kind_of(m["title"]) == "kept"]
    assert len(kept) == 1 and kept[0]["title"] == "tiny: trial 4 kept (+0.505 score)"
    assert "confirmed on 2 new seeds" in kept[0]["message"]
    verdicts = rows(lab, "SELECT verdict FROM trials WHERE id=4")
    assert verdicts[0]["verdict"] == "kept"
