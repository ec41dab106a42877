"""Errors a user can fix, by class name, with the exit status the CLI gives them.

Matched by name so that the CLI need not import the modules that define them (config
pulls in pydantic, the loop SQLAlchemy) just to be ready to catch them.
"""

USER_ERRORS = {
    "ConfigError": 2,  # nightlab.toml missing or wrong
    "LabError": 2,  # a request the lab cannot honour (api)
    "LabBusy": 2,  # another loop holds the lab
    "AgentError": 2,  # the worker backend cannot be built
    "WorkspaceError": 2,  # git refused, or the lab cannot be snapshotted
    "FileNotFoundError": 2,
    "FinishUpError": 2,  # a finish-up request that cannot be honoured
    "ReportError": 2,  # a report the store cannot back
    "SandboxError": 2,  # the sandbox the lab asks for cannot run here
    "NightError": 1,  # the night could not go on (e.g. the baseline failed)
}
