"""Notifier plugins: the `nightlab.notifiers` entry-point group, ready for notifications.

A package registers a notifier in its pyproject.toml:

    [project.entry-points."nightlab.notifiers"]
    mine = "my_package.notify:Notifier"

and `load("mine")` returns that object (here, the class), imported. A night with
`[notify] urls = ["plugin:mine"]` calls it once with no arguments and sends each message to
the result's `send(kind, title, body)` (loop/notify.py: PluginTarget).
A name nobody registered, or a package that fails to import, raises `PluginError` (a
`UserError`: the CLI prints its one line, naming the package, and exits with code 2).
"""

from __future__ import annotations

from typing import Any

from nightlab.config import plugin

GROUP = "nightlab.notifiers"


def load(name: str) -> Any:
    """The notifier registered as `name` under `nightlab.notifiers`, loaded."""
    return plugin(GROUP, name)
