"""Where the MLflow mirror may write a run's artifacts.

With `[tracking] trial_run` a sealed trial can write the local MLflow store (it logs into
its own run), so it could point a run's (or the experiment's) artifact location anywhere, or
plant a link on the way in `mlartifacts/`; the mirror would then write files wherever it
leads. Before it uploads, the mirror checks the run's artifact folder is a local folder under
the lab's artifact folder, reached through no link.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse


def sealed(artifact_uri: str, root: Path) -> bool:
    """Whether `artifact_uri` is a plain folder under `root`: no link on the way (a remote
    artifact store is not the trial's to redirect: True)."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return True
    target = Path(os.path.normpath(unquote(parsed.path)))
    root = Path(os.path.normpath(os.path.abspath(root)))
    if not target.is_relative_to(root):
        return False
    path = root
    for part in (root, *target.relative_to(root).parts):
        path = path / part if part is not root else root
        if path.is_symlink():
            return False
    return True
