"""Hostile requests and hostile files against the dashboard's app, in process (the ASGI app
`build` makes, through Starlette's test client): reflected text is never served as HTML,
a report name cannot climb out of .nightlab/reports, and a huge diff.patch is not read
whole."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nightlab.lab.dashboard import build, views

TOKEN = "a-test-token-of-24-chars"


@pytest.fixture
def client(make_lab) -> tuple[TestClient, Path]:
    lab = make_lab()
    app = build(lab, token=TOKEN)
    return TestClient(app, base_url="http://127.0.0.1:8321"), lab


def test_an_unknown_control_name_is_not_reflected_as_html(client):
    c, _ = client
    resp = c.get("/l/lab/control/%3Cimg%20src=x%20onerror=alert(1)%3E")
    assert resp.status_code == 404
    assert "<img" not in resp.text or resp.headers.get("content-type", "").startswith(
        "text/plain"
    ), resp.headers


@pytest.mark.parametrize("night", ["..", ".", "%2e%2e", "%2E%2E"])
def test_a_report_name_cannot_leave_the_reports_folder(client, night):
    c, lab = client
    (lab / ".nightlab").mkdir(exist_ok=True)
    (lab / ".nightlab" / "reports").mkdir(exist_ok=True)
    (lab / ".nightlab" / "report.html").write_text("STATE-FOLDER-FILE")
    (lab / ".nightlab" / "reports" / "report.html").write_text("REPORTS-ROOT-FILE")
    resp = c.get(f"/l/lab/reports/{night}/report.html")
    assert "STATE-FOLDER-FILE" not in resp.text and "REPORTS-ROOT-FILE" not in resp.text
    assert resp.status_code == 404


def test_a_huge_diff_is_not_read_whole(make_lab, tmp_path):
    lab = make_lab()
    folder = lab / ".nightlab" / "trials" / "1"
    folder.mkdir(parents=True)
    with open(folder / "diff.patch", "wb") as fh:  # 64 MiB, sparse on disk
        fh.write(b"+x\n" * 1000)
        fh.truncate(64 << 20)
    tracemalloc.start()
    try:
        lines, cut = views.diff_lines(views.Lab(lab), 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cut and lines[0] == ("add", "+x")
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB to show a cut diff"


def test_a_planted_symlink_diff_or_log_is_not_served(make_lab, tmp_path):
    secret = tmp_path / "heldout.csv"
    secret.write_text("HELD-OUT-TEST-DATA\n")
    lab = make_lab()
    folder = lab / ".nightlab" / "trials" / "1"
    folder.mkdir(parents=True)
    for name in ("diff.patch", "stdout.log", "stderr.log"):
        (folder / name).symlink_to(secret)
    assert views.diff_lines(views.Lab(lab), 1) == ([], False)
    assert "HELD-OUT" not in views.log_tail(views.Lab(lab), 1)


def test_huge_page_numbers_and_negative_ids_answer_cleanly(client):
    c, _ = client
    for path in ("/l/lab/storyline?page=-5", "/l/lab/storyline?page=99999999999999999999999",
                 "/l/lab/trial/-1", "/l/lab/trial/99999999999999999999999",
                 "/l/lab/leaderboard?top=-1", "/l/lab/leaderboard?top=999999999999999999999"):
        resp = c.get(path)
        assert resp.status_code in (200, 404, 422), (path, resp.status_code)


def test_rebinding_host_variants_are_refused(client):
    c, _ = client
    for host in ("127.0.0.1.evil.example", "localhost.evil.example", "evil.example:8321",
                 "127.0.0.1@evil.example", "evil.example#127.0.0.1", "evil.example/127.0.0.1"):
        assert c.get("/l/lab/", headers={"host": host}).status_code == 403, host
    for host in ("LOCALHOST:8321", "[::1]:8321", "127.0.0.1"):
        assert c.get("/l/lab/", headers={"host": host}).status_code == 200, host


def test_a_cross_site_post_with_the_cookie_is_refused(client):
    c, _ = client
    c.cookies.set("nightlab_dashboard", TOKEN)
    resp = c.post("/l/lab/control/stop", headers={"origin": "http://evil.example"})
    assert resp.status_code == 403
    # a bogus Authorization header does not stand in for an Origin when the cookie acts
    resp = c.post("/l/lab/control/stop", headers={"authorization": "Bearer nope"})
    assert resp.status_code in (401, 403), resp.status_code
    # login CSRF: another site cannot log this browser in
    resp = c.post("/login", data={"token": TOKEN}, headers={"origin": "http://evil.example"})
    assert resp.status_code == 403


def test_static_cannot_climb_out_of_its_folder(client):
    c, _ = client
    for path in ("/static/../nightlab.toml", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        resp = c.get(path)
        assert resp.status_code == 404, path


def test_read_only_has_no_control_route_at_all(make_lab):
    lab = make_lab()
    c = TestClient(build(lab, token=TOKEN, read_only=True), base_url="http://127.0.0.1:8321")
    auth = {"authorization": f"Bearer {TOKEN}"}
    for action in ("stop", "stop-now", "finish-up", "finish-up-cancel"):
        assert c.get(f"/l/lab/control/{action}").status_code == 404
        assert c.post(f"/l/lab/control/{action}", headers=auth).status_code in (404, 405)


def test_a_symlinked_report_folder_is_not_served(client, tmp_path):
    c, lab = client
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "report.html").write_text("OUTSIDE")
    reports = lab / ".nightlab" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "night1").symlink_to(outside)
    assert "OUTSIDE" not in c.get("/l/lab/reports/night1/report.html").text
    assert "night1" not in c.get("/l/lab/reports").text
