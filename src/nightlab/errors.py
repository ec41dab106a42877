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
    "SpecError": 2,  # the lab's training spec ([trial] spec) breaks its [spec] fields
    "NightError": 1,  # the night could not go on (e.g. the baseline failed)
}


def storage_problem(exc: BaseException) -> str | None:
    """One line for a full disk or a read-only / unwritable state folder (the store is left
    as it was: every write is one transaction), or None for any other error."""
    import errno

    seen: BaseException | None = exc
    while seen is not None:  # look through the chain (SQLAlchemy wraps sqlite's errors)
        text = str(seen).lower()
        if "disk is full" in text or getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            where = getattr(seen, "filename", None)
            return (f"the disk is full{f' ({where})' if where else ''}: free some space, then "
                    "run again — the night resumes where it stopped")  # fmt: skip
        if "readonly database" in text or getattr(seen, "errno", None) in (
            errno.EROFS, errno.EACCES, errno.EPERM
        ):  # fmt: skip
            where = getattr(seen, "filename", None) or "the lab's .nightlab/ folder"
            return f"cannot write {where} ({seen}): make it writable, then run again"
        seen = seen.__cause__ or seen.__context__
    return None
