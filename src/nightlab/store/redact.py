"""Keep secrets out of everything nightlab writes: the values of `*_API_KEY` / `*_TOKEN`
(and similar) environment variables, and strings shaped like common API keys, are replaced
by a marker in events, prompts, log tails, loop output, MLflow tags and reports; and trials
get an environment without those variables unless `[trial] pass_env` lists them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAME = re.compile(r".*(_API_KEY|_TOKEN|_SECRET|_PASSWORD)$", re.IGNORECASE)
MIN_SECRET_LEN = 6  # shorter values ("1", "true") would blank ordinary words
KEY_SHAPES = re.compile(
    r"\b(sk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|hf_[A-Za-z0-9]{20,})"
)


def secret_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Secret value → the name of the variable holding it, longest value first."""
    env = os.environ if env is None else env
    found = {
        value: name
        for name, value in env.items()
        if SECRET_NAME.match(name) and len(value.strip()) >= MIN_SECRET_LEN
    }
    return dict(sorted(found.items(), key=lambda kv: -len(kv[0])))


def redact(text: str, secrets: Mapping[str, str] | None = None) -> str:
    """`text` with every secret value replaced by `[redacted NAME]`."""
    secrets = secret_values() if secrets is None else secrets
    for value, name in secrets.items():
        if value in text:
            text = text.replace(value, f"[redacted {name}]")
    return KEY_SHAPES.sub("[redacted key]", text)


def redact_data(data: Any, secrets: Mapping[str, str] | None = None) -> Any:
    """A copy of JSON-like `data` with every string (keys included) redacted."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(data, str):
        return redact(data, secrets)
    if isinstance(data, dict):
        return {redact_data(k, secrets): redact_data(v, secrets) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v, secrets) for v in data]
    return data


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.match(name))


def trial_env(cfg: Any) -> dict[str, str]:
    """This process's environment as trials (and what runs their code) may see it: secrets
    and the agents' key (`[agents] api_key_env`) removed unless `[trial] pass_env` keeps
    them."""
    also = (cfg.agents.api_key_env,) if cfg.agents.api_key_env else ()
    return scrub_env(os.environ, cfg.trial.pass_env, also)


def scrub_env(
    env: Mapping[str, str], keep: list[str] | tuple[str, ...] = (), also: tuple[str, ...] = ()
) -> dict[str, str]:
    """`env` without secret-looking variables (and the names in `also`), except `keep`."""
    drop = set(also) - set(keep)
    return {
        k: v
        for k, v in env.items()
        if k in keep or (k not in drop and not SECRET_NAME.match(k))
    }
