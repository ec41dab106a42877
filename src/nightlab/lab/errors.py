"""The lab room's own error."""

from nightlab import UserError


class LabError(UserError):
    """A request the lab cannot honour as asked; the message says what to do."""
