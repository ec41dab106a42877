"""The controls: stop, stop now, extend (more hours), finish-up (now for M minutes, or
report now) and its cancel, each a confirm page (GET) and the action (POST), done only
through the `Lab` API. None of them exists under --read-only. Every POST needs the token and
a same-site Origin."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from nightlab import UserError
from nightlab.lab.dashboard import security

if TYPE_CHECKING:
    from nightlab.lab.api import Lab
    from nightlab.lab.dashboard.app import Dashboard

ACTIONS = {
    "stop": ("Stop the night", "No new trials; the running ones finish, then the loop ends."),
    "stop-now": ("Stop the night now", "The running trials are killed and the loop ends."),
    "finish-up": ("Finish up", "Confirmation runs for the top candidates, the held-out test "
                  "metric of the final pick, then the report."),
    "finish-up-cancel": ("Cancel the finish-up", "The requested finish-up is dropped."),
    "extend": ("Extend the night", "The running night's end moves this many hours later (a "
               "night without a time limit gets one); the loop takes it within a heartbeat."),
}  # fmt: skip
FORM_BYTES = 4096


def act(lab: Lab, action: str, form: dict[str, str]) -> str:
    """Do `action` through the Lab API; the line that says what came of it."""
    if action in ("stop", "stop-now"):
        st = lab.stop(now=action == "stop-now")
        if st.get("not_running"):  # a control that did nothing says so (409)
            raise UserError(f"{lab.name} is not running (state: {st['state']}): nothing to stop")
        return f"stop requested ({'now' if action == 'stop-now' else 'graceful'}); " \
               f"state: {st['state']}"  # fmt: skip
    if action == "extend":
        return lab.extend(form.get("hours", "").strip())["summary"]  # checked there
    if action == "finish-up-cancel":
        return lab.finish_up_cancel()["summary"]
    report_now = form.get("report_now") == "on"
    at = _utc_unless_zoned(form.get("at", "").strip() or None)  # the form's times are UTC
    shown = lab.finish_up(
        minutes_left=_number(form, "minutes_left", "minutes left"),
        at=at, in_minutes=_number(form, "in_minutes", "in minutes"), report_now=report_now,
    )  # fmt: skip
    return shown["summary"] + (f"; report: {shown['report']}" if shown.get("report") else "")


def _utc_unless_zoned(at: str | None) -> str | None:
    """The form says UTC (the browser may be elsewhere); the CLI reads a naive time as the
    machine's local time, so a time without a zone gets `+00:00` here."""
    import datetime as dt

    try:
        naive = at is not None and dt.datetime.fromisoformat(at).tzinfo is None
    except ValueError:
        return at  # finish_request explains it
    return f"{at}+00:00" if naive else at


def _number(form: dict[str, str], key: str, label: str) -> float | None:
    text = form.get(key, "").strip()
    try:
        return float(text) if text else None
    except ValueError:
        raise UserError(f"{label} must be a number, not {text[:40]!r}") from None


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {k: v[0] for k, v in parsed.items()}


def _cross_site(request: Request, token: str) -> bool:
    h = request.headers
    # only a valid Authorization header stands in for a missing Origin (a bogus one beside
    # the cookie does not)
    has_bearer = security.token_ok(security.bearer(h.get("authorization")), token)
    return not security.origin_ok(h.get("origin"), h.get("referer"), h.get("host"), has_bearer)


def _cookie(response: Response, token: str) -> None:
    response.set_cookie(security.COOKIE, token, httponly=True, samesite="strict", path="/")


def add_routes(app: FastAPI, dash: Dashboard) -> None:
    @app.get("/login")
    def login_page(next: str = "/") -> Response:
        return dash.page("login.html", next=_local(next), error=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        target = _local(form.get("next", "/"))
        if _cross_site(request, dash.token):
            return Response("refused: a login from another site", 403)
        if not security.token_ok(form.get("token"), dash.token):
            return dash.page("login.html", 401, next=target, error="wrong token")
        response = RedirectResponse(target, 303)
        _cookie(response, dash.token)
        return response

    if dash.read_only:
        return

    @app.get("/l/{slug}/control/{action}")
    def confirm(slug: str, action: str, request: Request) -> Response:
        lab = dash.lab(slug)
        if action not in ACTIONS:
            return Response(f"no control {action!r}", 404)
        title, what = ACTIONS[action]
        return dash.page("confirm.html", slug=slug, lab=lab, action=action, title=title,
                         what=what, need_token=not dash.authed(request))  # fmt: skip

    @app.post("/l/{slug}/control/{action}")
    async def control(slug: str, action: str, request: Request) -> Response:
        lab = dash.lab(slug)
        if action not in ACTIONS:
            return Response(f"no control {action!r}", 404)
        form = await _form(request)
        if not dash.authed(request, form.get("token")):
            return Response("the dashboard token is required for this control", 401)
        if _cross_site(request, dash.token):
            return Response("refused: the request's Origin is not this dashboard", 403)
        title = ACTIONS[action][0]
        try:
            result = await asyncio.to_thread(act, lab, action, form)
            ok, code = True, 200
        except UserError as exc:
            result, ok, code = str(exc), False, 409
        response = dash.page("result.html", code, slug=slug, lab=lab, title=title,
                             result=result, ok=ok)  # fmt: skip
        if form.get("token") and not request.cookies.get(security.COOKIE):
            _cookie(response, dash.token)
        return response


def _local(target: Any) -> str:
    """A path on this site only (an open redirect to another site is refused)."""
    text = str(target or "/")
    return text if text.startswith("/") and not text.startswith(("//", "/\\")) else "/"
