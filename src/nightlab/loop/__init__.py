"""The loop room: the night on one page (loop.py) and the parts it delegates to."""
