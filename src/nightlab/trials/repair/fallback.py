"""Model fallback: a failed trial whose log says its model is unsupported
(`[repair] unsupported_model_patterns`) runs again with the model `model_fallback_map` names
instead, from a patched copy of its parameters (`.nightlab/autofix_configs/<id>.json`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from nightlab.trials.repair.failure import Failure, Retry, toml_key, write_json

MODEL_KEYS = ("model.name", "model_name", "model")  # model parameters, most likely first

# after "Unsupported model.name": the name it reports, e.g. ": resnet999" or " 'unet_r34'"
NAMED_MODEL = re.compile(r"""\s*[:=]?\s*['"`]?([\w][\w.\-/]*)""")


def unsupported(failure: Failure) -> tuple[str, str | None] | None:
    """The log line saying the model is unsupported, and the model name it gives."""
    fallbacks = failure.rc.model_fallback_map
    for text in failure.texts:
        for raw in failure.rc.unsupported_model_patterns:
            pattern = _compile(raw)
            matches = list(pattern.finditer(text))
            if not matches:
                continue
            m = matches[-1]
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.end())
            line = text[start : len(text) if end < 0 else end]
            n = NAMED_MODEL.match(text, m.end())
            token = n.group(1).rstrip(".-/") if n else None
            if token in fallbacks:
                named = token
            else:  # a configured model named anywhere on that line
                named = next(
                    (
                        k
                        for k in fallbacks
                        if re.search(rf"(?<![\w.-]){re.escape(k)}(?![\w-])", line)
                    ),
                    None,
                )
                named = named or token
            return line.strip(), named
    return None


def fallback(failure: Failure, line: str, named: str | None, module: str | None) -> Retry | None:
    """The retry with the fallback model; None (with an event saying why) when the model
    has no fallback or no parameter of the trial holds it."""
    fallbacks = failure.rc.model_fallback_map
    params = failure.trial.params
    models = model_params(params)
    if named is not None and named not in fallbacks and all(v != named for _, v in models):
        named = None  # a word after the pattern, not a model this trial uses
    if named is not None:
        found = next(((p, v) for p, v in models if v == named), None)
    else:
        found = next(((p, v) for p, v in models if v in fallbacks), None)
    also = {"also_missing_module": module} if module else {}
    if found is None or found[1] not in fallbacks:
        model = named or (models[0][1] if models else None)
        if model in fallbacks:
            why = (
                f"model {model!r} has a fallback ({fallbacks[model]!r}) but no trial "
                "parameter holds it (looked for model.name, model_name, model, *.name, "
                "*_name), so it cannot be patched"
            )
        else:
            shown = model or "<model>"
            why = (
                f"unsupported model {model or '(not named)'} and no fallback for it: set "
                f'[repair] model_fallback_map = {{{toml_key(shown)} = "<a supported model>"}}'
            )
        failure.event("model_fallback", False, why, model=model, log_line=line[:500], **also)
        return None
    path, old = found
    new = fallbacks[old]
    if new == old:
        failure.event("model_fallback", False, f"model_fallback_map maps {old!r} to itself")
        return None
    patched = _patched(params, path, new)
    folder = failure.state / "autofix_configs"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{failure.trial.id}.json"
    write_json(config, patched)
    note = f"model {old} unsupported: retry with {new}"
    failure.event(
        "model_fallback",
        True,
        note,
        model=old,
        fallback=new,
        param=".".join(path),
        config=str(config),
        log_line=line[:500],
        **also,
    )
    return Retry(patched, note=note)


def model_params(params: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """The parameters that name a model — (key path, value) of the string values under
    model.name, model_name, model, then any *.name / *_name key (nested dicts as dotted keys),
    most likely first."""
    found = [
        (path, value)
        for path, value in _leaves(params)
        if isinstance(value, str) and _is_model_key(".".join(path))
    ]

    def rank(item: tuple[tuple[str, ...], str]) -> int:
        key = ".".join(item[0])
        return MODEL_KEYS.index(key) if key in MODEL_KEYS else len(MODEL_KEYS)

    return sorted(found, key=rank)


def _is_model_key(key: str) -> bool:
    return key in MODEL_KEYS or key.endswith((".name", "_name"))


def _leaves(
    data: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            yield from _leaves(value, path)
        else:
            yield path, value


def _patched(params: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = dict(params)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = _patched(params[path[0]], path[1:], value)
    return out


def _compile(pattern: str) -> re.Pattern[str]:
    """A configured pattern as a regex; one that is not valid regex matches literally."""
    try:
        return re.compile(pattern)
    except re.error:
        return re.compile(re.escape(pattern))
