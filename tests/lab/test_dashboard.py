"""The dashboard (`nightlab dashboard`, `run/start --dashboard`) served for real over HTTP:
its token, Host and Origin rules against hostile requests, escaping of hostile trial output
and agent text, the controls ending a real night, and its pages on a large store."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from dashboard_kit import dashboard, free_port, http

from nightlab import Lab
from nightlab.config import ConfigError, load_config
from nightlab.lab.dashboard import security

from conftest import cli, execute, rows, spawn_loop, status, try_rows, wait_for

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"
TOKEN = "a-test-token-of-24-chars"


def test_a_host_beyond_this_machine_without_a_token_refuses_to_start(make_lab):
    lab = make_lab()
    proc = cli("dashboard", str(lab), "--host", "0.0.0.0", "--port", str(free_port()),
               check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "--token" in proc.stderr and "SSH tunnel" in proc.stderr
    short = cli("dashboard", str(lab), "--host", "0.0.0.0", "--token", "short", check=False)
    assert short.returncode == 2 and "at least 16" in short.stderr
    nowhere = cli("dashboard", str(lab / "missing"), check=False)
    assert nowhere.returncode == 2 and "not a folder" in nowhere.stderr


def test_the_rules_on_tokens_hosts_and_origins(monkeypatch):
    assert security.is_loopback("127.0.0.1") and security.is_loopback("::1")
    assert security.is_loopback("localhost") and not security.is_loopback("0.0.0.0")
    for host in ("127.0.0.1:8321", "localhost:9000", "[::1]:8321", "10.1.2.3:8321"):
        assert security.host_ok(host, "127.0.0.1"), host
    for host in ("evil.example:8321", "127.0.0.1.evil.example", "", None, "a b", "x@evil:1"):
        assert not security.host_ok(host, "127.0.0.1"), host
    host = "127.0.0.1:8321"
    assert security.origin_ok("http://127.0.0.1:8321", None, host, False)
    assert security.origin_ok(None, "http://127.0.0.1:8321/l/lab/control/stop", host, False)
    assert not security.origin_ok("http://evil.example", None, host, True)
    assert not security.origin_ok("null", None, host, True)
    assert not security.origin_ok("http://127.0.0.1:8322", None, host, False)
    assert not security.origin_ok(None, None, host, False)  # a cookie alone, no Origin
    assert security.origin_ok(None, None, host, True)  # curl with Authorization: Bearer
    # the token is compared in constant time, and nothing empty ever matches
    seen = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: seen.append(1) or real(a, b))
    assert security.token_ok(TOKEN, TOKEN) and not security.token_ok(TOKEN[:-1] + "X", TOKEN)
    assert not security.token_ok("", TOKEN) and not security.token_ok(None, TOKEN)
    assert len(seen) == 2
    assert security.bearer("Bearer abc") == "abc" and security.bearer("Basic abc") is None


def test_hostile_trial_output_and_agent_text_render_as_text(make_lab, tmp_path):
    lab = make_lab(max_trials=4)
    cli("run", str(lab))
    execute(lab, "UPDATE trials SET hypothesis = ?, reason = ? WHERE id = 4", HOSTILE, HOSTILE)
    execute(lab, "UPDATE cycles SET summary = ? WHERE id = (SELECT MAX(id) FROM cycles)", HOSTILE)
    execute(lab, "INSERT INTO notes (ts, author, section, text) VALUES (1, ?, 'mentor', ?)",
            HOSTILE, HOSTILE)  # fmt: skip
    with open(lab / ".nightlab" / "trials" / "4" / "stdout.log", "a") as log:
        log.write(HOSTILE + "\n")
    (lab / ".nightlab" / "trials" / "4" / "diff.patch").write_text(f"+{HOSTILE}\n-old\n")
    with dashboard(lab, tmp=tmp_path) as served:
        pages = ["/l/lab/", "/l/lab/trial/4", "/l/lab/notes", "/l/lab/storyline",
                 "/l/lab/leaderboard"]  # fmt: skip
        for page in pages:
            code, body, headers = http("GET", served.url + page)
            assert code == 200, page
            assert "<script>alert" not in body and "<img src=x" not in body, page
            assert "script-src 'self'" in headers["content-security-policy"]
        _, trial, _ = http("GET", served.url + "/l/lab/trial/4")
        assert trial.count("&lt;script&gt;alert(") >= 3  # hypothesis, reason, log, diff
        assert '<span class="add">+&lt;script&gt;' in trial
        # the live fragments pushed by server-sent events are escaped the same way
        fragment = first_event(served.url + "/l/lab/events")
        assert "<script>alert" not in fragment and "&lt;script&gt;" in fragment


def first_event(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp:
        lines = []
        for raw in resp:
            line = raw.decode()
            if line.startswith("data:"):
                lines.append(line[5:])
            elif lines and not line.strip():
                return json.dumps(json.loads("".join(lines)))
    raise AssertionError("no event")


@pytest.mark.slow
def test_controls_need_the_token_and_refuse_forged_hosts_and_origins(make_lab, tmp_path):
    lab = make_lab(max_trials=30)
    loop = spawn_loop(lab, env={"TEST_TRIAL_SLEEP": "1"})
    try:
        wait_for(lambda: status(lab)["state"] == "running", what="the night")
        with dashboard(lab, "--token", TOKEN, tmp=tmp_path) as served:
            assert served.token is None  # given, not made: never printed
            stop = served.url + "/l/lab/control/stop"
            origin = {"Origin": served.url}
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
            assert http("POST", stop, headers=origin)[0] == 401
            assert http("POST", stop, headers={**origin, **wrong})[0] == 401
            form = urlencode({"token": "nope"}).encode()
            assert http("POST", stop, headers=origin, data=form)[0] == 401
            cookie = {"Cookie": f"{security.COOKIE}={TOKEN}"}
            assert http("POST", stop, headers=cookie)[0] == 403  # a cookie without an Origin
            assert http("POST", stop, headers={**bearer, "Origin": "http://evil.example"})[0] \
                == 403  # fmt: skip
            forged = {**bearer, "Host": "evil.example", "Origin": "http://evil.example"}
            assert http("POST", stop, headers=forged)[0] == 403
            assert http("GET", served.url + "/l/lab/", headers={"Host": "evil.example"})[0] \
                == 403  # DNS rebinding: reads too  # fmt: skip
            time.sleep(2.5)  # a heartbeat or so: had anything asked it to stop, it would show
            st = status(lab)
            assert st["state"] == "running" and not st["stop_requested"]
            # with the token and this site's Origin: done, and the night ends
            code, body, _ = http("POST", stop, headers={**bearer, **origin})
            assert code == 200 and "stop requested" in body
            wait_for(lambda: status(lab)["state"] != "running", timeout=60, what="the stop")
            assert status(lab)["state"] == "stopped"
            code, body, _ = http("POST", stop, headers={**bearer, **origin})
            assert code == 409 and "not running" in body  # the Lab API's refusal, shown
    finally:
        loop.wait(timeout=60)
    assert_token_nowhere(lab, TOKEN)


def assert_token_nowhere(lab: Path, token: str) -> None:
    """Not in the store, nor in any file of .nightlab (logs, trial folders, artifacts)."""
    conn = sqlite3.connect(lab / ".nightlab" / "state.db")
    try:
        assert token not in "\n".join(conn.iterdump())
    finally:
        conn.close()
    for path in (lab / ".nightlab").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), path


def test_read_only_has_no_controls_and_a_wider_host_needs_the_token(make_lab, tmp_path):
    lab = make_lab(max_trials=4)
    cli("run", str(lab))
    with dashboard(lab, "--read-only", tmp=tmp_path) as served:
        assert served.token is None  # nothing needs one
        _, page, _ = http("GET", served.url + "/l/lab/")
        assert "/control/" not in page
        assert http("GET", served.url + "/l/lab/control/stop")[0] == 404
        assert http("POST", served.url + "/l/lab/control/stop",
                    headers={"Origin": served.url})[0] in (404, 405)  # fmt: skip
    with dashboard(lab, "--host", "0.0.0.0", "--token", "generate", tmp=tmp_path) as served:
        assert served.token and len(served.token) >= 16
        code, _, headers = http("GET", served.url + "/l/lab/")
        assert code == 303 and headers["location"].startswith("/login")
        assert http("GET", served.url + "/l/lab/events")[0] in (303, 401)
        ok = http("GET", served.url + "/l/lab/",
                  headers={"Authorization": f"Bearer {served.token}"})  # fmt: skip
        assert ok[0] == 200
        login = urlencode({"token": served.token, "next": "//evil.example/"}).encode()
        code, _, headers = http("POST", served.url + "/login", data=login,
                                headers={"Origin": served.url})  # fmt: skip
        assert code == 303 and headers["location"] == "/"  # no open redirect
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        bad = urlencode({"token": "wrong-token-wrong-token"}).encode()
        assert http("POST", served.url + "/login", data=bad,
                    headers={"Origin": served.url})[0] == 401  # fmt: skip


def test_a_folder_of_labs_gets_an_index(make_lab, tmp_path):
    one, two = make_lab(name="labs/one", max_trials=3), make_lab(name="labs/two", max_trials=3)
    cli("run", str(one))
    with dashboard(one.parent, tmp=tmp_path) as served:
        code, body, _ = http("GET", served.url + "/")
        assert code == 200 and 'href="/l/one/"' in body and 'href="/l/two/"' in body
        assert http("GET", served.url + "/l/two/")[0] == 200  # never ran: still a page
        assert http("GET", served.url + "/l/three/")[0] == 404
        assert http("GET", served.url + "/l/one/trial/999")[0] == 404
        assert http("GET", served.url + "/l/one/reports/..%2F..%2Fetc/report.html")[0] == 404
    assert two.is_dir()


@pytest.mark.slow
def test_start_dashboard_serves_with_the_night_and_keeps_the_token_out_of_argv(
    make_lab, tmp_path
):
    lab = make_lab(max_trials=30)
    port = free_port()
    proc = cli("start", str(lab), "--dashboard", "--port", str(port),
               "--hours", "1")  # fmt: skip
    line = next(x for x in proc.stdout.splitlines() if x.startswith("dashboard:"))
    assert f"http://127.0.0.1:{port}/" in line
    token = line.rsplit(" ", 1)[-1]
    pid = status(lab)["pid"]
    assert token not in Path(f"/proc/{pid}/cmdline").read_text()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: http("GET", url + "/l/lab/")[0] == 200, what="the dashboard")
    code, body, _ = http("POST", url + "/l/lab/control/stop-now",
                         headers={"Authorization": f"Bearer {token}", "Origin": url})  # fmt: skip
    assert code == 200, body
    wait_for(lambda: status(lab)["state"] != "running", timeout=60, what="the stop")
    with pytest.raises(OSError):  # the dashboard ended with the night
        wait_for(lambda: http("GET", url + "/l/lab/") and False, timeout=5)
    assert rows(lab, "SELECT COUNT(*) FROM trials WHERE status = 'running'") == [(0,)]
    assert_token_nowhere(lab, token)


def test_finish_up_and_its_cancel_through_the_controls(make_lab, tmp_path):
    lab = make_lab(max_trials=3)
    cli("run", str(lab))
    with dashboard(lab, tmp=tmp_path) as served:
        auth = {"Authorization": f"Bearer {served.token}", "Origin": served.url}
        url = served.url + "/l/lab/control/"
        code, page, _ = http("GET", url + "finish-up")
        assert code == 200 and 'name="minutes_left"' in page and 'name="token"' in page
        bad = urlencode({"minutes_left": "soon"}).encode()
        code, body, _ = http("POST", url + "finish-up", headers=auth, data=bad)
        assert code == 409 and "must be a number" in body
        form = urlencode({"minutes_left": "15"}).encode()
        code, body, _ = http("POST", url + "finish-up", headers=auth, data=form)
        assert code == 200 and "15" in body
        assert "15" in cli("finishup", str(lab), "--show").stdout  # the request, stored
        for fields, said in (({"at": "tonight"}, "not an ISO 8601 time"),
                             ({"at": "2030-01-01T05:30", "in_minutes": "5"}, "give one of"),
                             ({"in_minutes": "<b>x</b>"}, "in minutes must be a number")):
            form = urlencode({"minutes_left": "20", **fields}).encode()
            code, body, _ = http("POST", url + "finish-up", headers=auth, data=form)
            assert code == 409 and said in body and "<b>x" not in body, body  # fmt: skip
        form = urlencode({"minutes_left": "20", "at": "2030-01-01T05:30"}).encode()
        code, body, _ = http("POST", url + "finish-up", headers=auth, data=form)
        assert code == 200 and "2030-01-01" in cli("finishup", str(lab), "--show").stdout
        code, body, _ = http("POST", url + "finish-up-cancel", headers=auth)
        assert code == 200 and "cancel" in body
        assert http("POST", url + "finish-up-cancel", headers=auth)[0] == 409  # none left
        assert http("POST", url + "nothing", headers=auth)[0] == 404



def test_extend_through_the_controls_moves_the_running_nights_end(make_lab, tmp_path):
    lab = make_lab(max_trials=10_000)
    loop = spawn_loop(lab, "--run-hours", "1", env={"TEST_TRIAL_SLEEP": "0.5"})
    try:
        wait_for(lambda: status(lab)["state"] == "running", 60, "the loop to start")
        before = rows(lab, "SELECT deadline_at FROM runs")[0][0]
        with dashboard(lab, tmp=tmp_path) as served:
            auth = {"Authorization": f"Bearer {served.token}", "Origin": served.url}
            url = served.url + "/l/lab/control/extend"
            assert "/control/extend" in http("GET", served.url + "/l/lab/")[1]
            code, page, _ = http("GET", url)
            assert code == 200 and 'name="hours"' in page and 'name="token"' in page
            form = urlencode({"hours": "0.5"}).encode()
            assert http("POST", url, data=form, headers={"Origin": served.url})[0] == 401
            for hostile in ("nan", "-inf", "0", "-2", "1e9", "soon", HOSTILE):
                code, body, _ = http("POST", url, headers=auth,
                                     data=urlencode({"hours": hostile}).encode())  # fmt: skip
                assert code == 409 and "hours must be" in body, hostile
                assert "<script>alert" not in body
            code, body, _ = http("POST", url, headers=auth, data=form)
            assert code == 200 and "the night now ends" in body
        after = rows(lab, "SELECT deadline_at FROM runs")[0][0]
        assert after == pytest.approx(before + 1800)
        assert rows(lab, "SELECT COUNT(*) FROM events WHERE kind='hours_extended'") == [(1,)]
    finally:
        cli("stop", str(lab), "--now", check=False)
        loop.wait(60)



CURVE_TRIAL = """
import os, time
for i in range(400):
    print(f"step={i} score={i / 100}", flush=True)
    time.sleep(0.05)
print("score=4.0")
"""


def test_live_curves_of_running_trials_and_of_hostile_output(make_lab, tmp_path):
    lab = make_lab(max_trials=1, trial=CURVE_TRIAL)
    loop = spawn_loop(lab)
    try:
        wait_for(lambda: try_rows(lab, "SELECT COUNT(*) FROM trials WHERE status='running'")
                 == [(1,)], 60, "a running trial")  # fmt: skip
        with dashboard(lab, tmp=tmp_path) as served:
            api = served.url + "/l/lab/api/trial/"
            [(tid,)] = rows(lab, "SELECT id FROM trials WHERE status='running'")
            page = http("GET", served.url + "/l/lab/")[1]
            assert f'data-curve="/l/lab/api/trial/{tid}/curve"' in page
            assert 'class="live-curve"' in http("GET", f"{served.url}/l/lab/trial/{tid}")[1]

            def points() -> list:
                code, body, headers = http("GET", f"{api}{tid}/curve")
                assert code == 200 and headers["content-type"] == "application/json"
                return json.loads(body)["y"]

            first = wait_for(lambda: len(points()) >= 3, 30, "printed points")
            assert first
            later = wait_for(lambda: (p := points()) and len(p) > 10 and p, 30, "more points")
            assert later[:3] == [0.0, 0.01, 0.02]  # the points as the trial prints them
            assert http("GET", api + "9999/curve")[0] == 404
            assert http("GET", api + "abc/curve")[0] == 422
        cli("stop", str(lab), "--now", check=False)
        loop.wait(60)
        # a trial controls its output: NaN, inf, huge numbers, a flood of points, a 50 MB line
        out = Lab(lab).paths.trial(tid) / "stdout.log"
        with out.open("w") as f:
            f.writelines(f"step={i} score={i}\n" for i in range(1_000_000))
            f.write("score=nan\nscore=inf\nscore=1e308\n" + HOSTILE + "=1\n")
            f.write("score=2 " * (1 << 20) + "\n" + "x" * (50 << 20))
        with dashboard(lab, tmp=tmp_path) as served:
            started = time.perf_counter()
            code, body, _ = http("GET", f"{served.url}/l/lab/api/trial/{tid}/curve")
            assert time.perf_counter() - started < 2
            got = json.loads(body)  # strict JSON: no NaN or Infinity in it
            assert code == 200 and len(got["y"]) <= 500
            assert all(isinstance(v, (int, float)) for v in got["x"] + got["y"])
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait(10)


BIG = 100_000


@pytest.mark.slow
def test_pages_stay_fast_on_a_store_of_100k_trials(make_lab, tmp_path):
    """Each page and each live push reads bounded or aggregated SQL: timed on 100k trials."""
    lab = make_lab(max_trials=4)
    cli("run", str(lab))
    conn = sqlite3.connect(lab / ".nightlab" / "state.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(trials)") if r[1] != "id"]
    picked = ", ".join(f"[{c}]" for c in columns)
    copied = picked.replace("[objective]", "1 + (n % 1000) / 1000.0").replace(
        "[verdict]", "CASE WHEN n % 5000 = 0 THEN 'kept' ELSE 'discarded' END")
    conn.execute(
        f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {BIG}) "
        f"INSERT INTO trials ({picked}) SELECT {copied} FROM seq, "
        "(SELECT * FROM trials WHERE id = 4)"
    )
    conn.commit()
    conn.close()
    with dashboard(lab, tmp=tmp_path) as served:
        timings = {}
        for page in ("/l/lab/", "/l/lab/trial/50000", "/l/lab/storyline", "/l/lab/notes",
                     "/l/lab/api/overview"):  # fmt: skip
            start = time.perf_counter()
            code, body, _ = http("GET", served.url + page)
            timings[page] = time.perf_counter() - start
            assert code == 200, page
        start = time.perf_counter()
        first_event(served.url + "/l/lab/events")
        timings["events"] = time.perf_counter() - start
        scatter = json.loads(http("GET", served.url + "/l/lab/api/overview")[1])["scatter"]
        assert scatter["aggregated"] and scatter["n"] > BIG and len(scatter["x"]) <= 2000
        import psutil

        rss = psutil.Process(served.proc.pid).memory_info().rss / 2**20
    print(f"100k trials: {({k: round(v, 3) for k, v in timings.items()})}, RSS {rss:.0f} MiB")
    assert max(timings.values()) < 2.0, timings
    assert rss < 400, rss


def test_a_trial_links_its_mlflow_run_when_the_ui_url_is_set(make_lab, tmp_path):
    ui = "http://127.0.0.1:5000"
    lab = make_lab(max_trials=3, toml_extra="")
    toml = lab / "nightlab.toml"
    toml.write_text(toml.read_text().replace("[tracking]\n", f'[tracking]\nui_url = "{ui}/"\n'))
    cli("run", str(lab))
    run_id = "0123456789abcdef0123456789abcdef"
    execute(lab, "UPDATE trials SET mlflow_run_id = ? WHERE id = 1", run_id)
    execute(lab, "UPDATE trials SET mlflow_run_id = ? WHERE id = 2", '" onclick="alert(1)')
    with dashboard(lab, "--read-only", tmp=tmp_path) as served:
        _, page, _ = http("GET", served.url + "/l/lab/trial/1")
        assert f'href="{ui}/#/runs/{run_id}"' in page
        _, page, _ = http("GET", served.url + "/l/lab/trial/2")
        assert 'id="mlflow-run"' not in page and "onclick" not in page  # not a run id: no link
    toml.write_text(toml.read_text().replace(f'"{ui}/"', '"javascript:alert(1)"'))
    with pytest.raises(ConfigError, match="ui_url"):
        load_config(lab)
