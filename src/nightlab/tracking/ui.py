"""Links into the MLflow UI (`[tracking] ui_url`), shared by the dashboard and the report.
Standard library only."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

RUN_ID = re.compile(r"^[0-9a-f]{8,64}$")  # what MLflow names a run
_URL = re.compile(r"^https?://[^\s\"'<>`]+$")


def run_url(ui_url: str | None, run_id: str | None) -> str | None:
    """A run's page in the MLflow UI at `ui_url`; None without a UI, a run id, or when either
    could smuggle anything but a plain http(s) link (a `javascript:` URL, quotes, spaces)."""
    if not ui_url or not run_id or not RUN_ID.match(run_id) or not _URL.match(ui_url):
        return None
    if urlsplit(ui_url).scheme not in ("http", "https") or not urlsplit(ui_url).netloc:
        return None
    return f"{ui_url.rstrip('/')}/#/runs/{run_id}"
