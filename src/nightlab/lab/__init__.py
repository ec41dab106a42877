"""The lab room: the `Lab` API every front end calls, the CLI, terminal views, adopt and
the `init` templates."""
