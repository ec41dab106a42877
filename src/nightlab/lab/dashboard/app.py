"""The dashboard's web app: FastAPI routes over `views` (reads) and `controls` (actions), with
the rules of `security` applied to every request by one middleware."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from nightlab.lab.api import Lab
from nightlab.lab.dashboard import controls, live, security, views

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
       "base-uri 'none'")  # fmt: skip
# a stored report.html is shown as a static document: its own styles and images, no script
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
              "frame-ancestors 'none'; sandbox")  # fmt: skip


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _clock(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped: trial output and agent text are hostile
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(fmt=_fmt, duration=_duration, clock=_clock)
    return env


class Dashboard:
    """The app's state: the labs served (slug → Lab), the token and the binding."""

    def __init__(self, labs: dict[str, Lab], *, token: str, bound: str, read_only: bool,
                 index: bool = False) -> None:  # fmt: skip
        self.labs, self.token, self.bound = labs, token, bound
        self.read_only, self.index = read_only, index
        self.open_reads = security.is_loopback(bound)
        self.env = environment()

    def render(self, name: str, **ctx: Any) -> str:
        base = {"read_only": self.read_only, "labs": self.labs}
        return self.env.get_template(name).render(**base, **ctx)

    def page(self, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(self.render(name, **ctx), status_code=status_code)

    def lab(self, slug: str) -> Lab:
        if slug not in self.labs:
            raise HTTPException(404, f"no lab {slug!r} here")
        return self.labs[slug]

    def authed(self, request: Request, form_token: str | None = None) -> bool:
        """Does this request carry the token (header, cookie or form field)?"""
        given = (security.bearer(request.headers.get("authorization")),
                 request.cookies.get(security.COOKIE), form_token)  # fmt: skip
        return any(security.token_ok(g, self.token) for g in given if g)


def create_app(dash: Dashboard) -> FastAPI:
    app = FastAPI(title="nightlab", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.dash = dash
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if not security.host_ok(request.headers.get("host"), dash.bound):
            return Response("refused: the Host header does not name this machine", 403)
        path = request.url.path
        public = path.startswith("/static/") or path == "/login"
        if not dash.open_reads and not public and not dash.authed(request):
            if request.method == "GET" and "/control/" not in path:
                return RedirectResponse(f"/login?next={quote(path)}", 303)
            return Response("the dashboard token is required", 401)
        response = await call_next(request)
        # a plain Response(text) has no type: a browser would sniff reflected text as HTML
        response.headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", response_class=HTMLResponse)
    def index() -> Response:
        if len(dash.labs) == 1 and not dash.index:
            return RedirectResponse(f"/l/{next(iter(dash.labs))}/", 303)
        rows = [{"slug": s, "lab": lab, "status": lab.status()} for s, lab in dash.labs.items()]
        return dash.page("index.html", rows=rows)

    @app.get("/l/{slug}/", response_class=HTMLResponse)
    def overview(slug: str) -> Response:
        lab = dash.lab(slug)
        return dash.page("overview.html", slug=slug, lab=lab, **views.overview(lab))

    @app.get("/l/{slug}/events")
    async def events(slug: str, request: Request) -> Response:
        from sse_starlette.sse import EventSourceResponse

        lab = dash.lab(slug)
        return EventSourceResponse(
            live.stream(lab, dash.render, request.is_disconnected, slug=slug, lab=lab),
            ping=15,
        )

    @app.get("/l/{slug}/api/overview")
    def overview_json(slug: str) -> Response:
        lab = dash.lab(slug)
        view = views.overview(lab)
        keys = ("status", "running", "recent", "scatter", "pruning")
        return JSONResponse({k: view[k] for k in keys})

    @app.get("/l/{slug}/api/trial/{trial_id}/curve")
    def trial_curve(slug: str, trial_id: int) -> Response:
        lab = dash.lab(slug)
        found = views.live_curve(lab, trial_id)
        if found is None:
            raise HTTPException(404, f"no trial {trial_id} in {lab.name}")
        return JSONResponse(found)

    @app.get("/l/{slug}/trial/{trial_id}", response_class=HTMLResponse)
    def trial(slug: str, trial_id: int) -> Response:
        lab = dash.lab(slug)
        found = views.trial_page(lab, trial_id)
        if found is None:
            raise HTTPException(404, f"no trial {trial_id} in {lab.name}")
        return dash.page("trial.html", slug=slug, lab=lab, **found)

    @app.get("/l/{slug}/leaderboard", response_class=HTMLResponse)
    def leaderboard(slug: str, top: int = 50) -> Response:
        lab = dash.lab(slug)
        rows = lab.leaderboard(max(1, min(top, 500)))
        return dash.page("leaderboard.html", slug=slug, lab=lab, rows=rows,
                         cfg=views.settings(lab))  # fmt: skip

    @app.get("/l/{slug}/storyline", response_class=HTMLResponse)
    def storyline(slug: str, page: int = 0) -> Response:
        lab = dash.lab(slug)
        lines, total = views.story(lab, page)
        return dash.page("storyline.html", slug=slug, lab=lab, lines=lines, total=total,
                         page=max(page, 0), size=views.STORY_PAGE)  # fmt: skip

    @app.get("/l/{slug}/notes", response_class=HTMLResponse)
    def notes(slug: str) -> Response:
        lab = dash.lab(slug)
        return dash.page("notes.html", slug=slug, lab=lab, **views.notes(lab))

    @app.get("/l/{slug}/reports", response_class=HTMLResponse)
    def reports(slug: str) -> Response:
        lab = dash.lab(slug)
        return dash.page("reports.html", slug=slug, lab=lab, rows=views.reports(lab))

    @app.get("/l/{slug}/reports/{night}/report.html")
    def report(slug: str, night: str) -> Response:
        body = views.report_html(dash.lab(slug), night)
        if body is None:
            raise HTTPException(404, "no such report")
        return Response(body, media_type="text/html",
                        headers={"Content-Security-Policy": REPORT_CSP})  # fmt: skip

    controls.add_routes(app, dash)
    return app
