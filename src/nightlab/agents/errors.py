"""The agents room's user-facing error: imported at top level by every module that raises it
(the factory, the command worker, the context), so none needs the package's __init__."""

from __future__ import annotations

from nightlab import UserError


class AgentError(UserError):
    """The configured agent backend cannot be used; the message says why and what to do."""
