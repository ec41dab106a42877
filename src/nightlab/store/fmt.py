"""Numbers as people read them in logs, tables and storylines."""

from typing import Any


def value(v: Any, digits: int = 4) -> str:
    """Floats to `digits` significant digits, anything else as it prints."""
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)
