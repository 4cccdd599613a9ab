"""``{{name}}`` placeholders in an API-format ComfyUI workflow, filled from a dict of values.

A workflow is untrusted data: placeholders are found with one regular expression and replaced by
plain look-up, never evaluated.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from ._http import ComfyUIError

__all__ = ["PLACEHOLDER", "fill_placeholders", "find_placeholders"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")


def _walk_strings(value: Any):
    """Every string in a JSON value (dict values and keys are not mixed: only values are placeholders)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk_strings(v)


def find_placeholders(workflow: Any) -> list[str]:
    """The placeholder names used in ``workflow``, in first-use order."""
    names: dict[str, None] = {}
    for text in _walk_strings(workflow):
        for m in PLACEHOLDER.finditer(text):
            names.setdefault(m.group(1))
    return list(names)


def _fill(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:  # the whole string: the value itself, of any type (an int seed stays an int)
            return copy.deepcopy(values[whole.group(1)])
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_fill(v, values) for v in value]
    return copy.deepcopy(value)


def fill_placeholders(workflow: dict, values: Mapping[str, Any]) -> dict:
    """A deep copy of ``workflow`` with every ``{{name}}`` replaced from ``values``.

    A string that is exactly ``"{{name}}"`` becomes ``values[name]`` (any type); a placeholder inside
    other text is replaced by ``str(values[name])``. Placeholders without a value are one error
    listing all of them; values no placeholder uses are ignored.
    """
    if not isinstance(workflow, dict):
        raise ComfyUIError(f"a ComfyUI workflow must be a JSON object (API format), got {type(workflow).__name__}")
    missing = [n for n in find_placeholders(workflow) if n not in values]
    if missing:
        given = ", ".join(sorted(values)) or "none"
        raise ComfyUIError(f"the workflow's placeholders {', '.join('{{' + n + '}}' for n in missing)} have no "
                           f"value (values given: {given}); give them or remove them from the workflow")
    return _fill(workflow, values)
