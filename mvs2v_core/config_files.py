"""TOML config files: reading them, and their problems as one line each (pydantic errors named by key path).

Shared by every TOML config of the project (the trainer's ``mvs2v-train`` config, the data
pipeline's ``mvs2v-data`` config): a typo never becomes a pydantic traceback, and each problem says
the key (``stages[2].views``), the bad value and what is allowed, with a "did you mean" for unknown
keys. Callers validate with their own root model and pass ``ValidationError.errors()`` items here.

pydantic is imported where it is needed (the CLI core never needs it).
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence, get_args

from .errors import MVS2VError

__all__ = ["ConfigError", "describe_validation_error", "validation_problems", "dotted_key", "toml_module", "read_toml"]


class ConfigError(MVS2VError):
    """A config that cannot be used as written: one line per problem, naming the key and the fix."""

    def __init__(self, *problems: str, source: str = "") -> None:
        self.problems = list(problems)
        if len(problems) == 1:
            message = problems[0]
        else:
            where = f" in {source}" if source else ""
            message = f"{len(problems)} problems{where}:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(message)


_MUST_BE = {
    "int_type": "an integer", "int_from_float": "an integer", "int_parsing": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string (in quotes)",
    "list_type": "a list ([...])", "model_type": "a table (key = value lines)",
    "model_attributes_type": "a table (key = value lines)", "dict_type": "a table (key = value lines)",
}
_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def dotted_key(loc: Sequence) -> str:
    """``('stages', 2, 'filter', 'tags')`` -> ``stages[2].filter.tags``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _table_at(root: Any, loc: Sequence) -> Any:
    """The table model whose keys sit at ``loc`` under ``root`` (list indices skipped), or None."""
    from pydantic import BaseModel

    model: Any = root
    for part in (p for p in loc if isinstance(p, str)):
        info = model.model_fields.get(part) if model is not None else None
        args = (info.annotation, *get_args(info.annotation)) if info is not None else ()
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model


def _field_at(root: Any, loc: Sequence) -> Any:
    """The pydantic FieldInfo of the key at ``loc`` (None for a list item or an unknown key)."""
    table = _table_at(root, loc[:-1]) if loc and isinstance(loc[-1], str) else None
    return table.model_fields.get(loc[-1]) if table is not None else None


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range_of(root: Any, loc: Sequence) -> str:
    """``" in [1, 4096]"`` for a bounded number field at ``loc``; "" otherwise."""
    info = _field_at(root, loc)
    b = {k: getattr(m, k) for m in (info.metadata if info else ()) for k in ("ge", "gt", "le", "lt")
         if getattr(m, k, None) is not None}
    if not b:
        return ""
    low = f"[{_num(b['ge'])}" if "ge" in b else f"({_num(b.get('gt', '-inf'))}"
    high = f"{_num(b['le'])}]" if "le" in b else f"{_num(b.get('lt', 'inf'))})"
    return f" in {low}, {high}"


def _unknown_key(root: Any, loc: Sequence, hidden: Sequence[str]) -> str:
    key, parent = loc[-1], tuple(loc[:-1])
    table = _table_at(root, parent)
    known = sorted(k for k in table.model_fields if k not in hidden) if table is not None else []
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"a key of [{dotted_key(parent)}]" if parent else "a table of the config"
    return f"{dotted_key(loc)} is not {where}{hint}; the known ones are {', '.join(known)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_validation_error(error: Mapping[str, Any], root: Any, hidden: Sequence[str] = ()) -> list[str]:
    """One pydantic error (an item of ``ValidationError.errors()``) of a ``root`` model as problem lines.

    ``hidden``: field names the user never writes (filled in by the loader), left out of "known ones".
    """
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    path, ctx = dotted_key(loc), error.get("ctx") or {}
    if kind == "value_error":
        text = str(ctx.get("error", error["msg"]))
        return [f"{path}: {line}" if path else line for line in text.splitlines()]
    if kind == "extra_forbidden":
        return [_unknown_key(root, loc, hidden)]
    if kind in ("literal_error", "enum"):
        return [f"{path} is {_short(value)}; use one of {ctx.get('expected')}"]
    if kind == "list_type" and isinstance(value, Mapping):
        return [f"{path} must be an array of tables: write each entry as [[{'.'.join(p for p in loc if isinstance(p, str))}]]"]
    if kind in _MUST_BE:
        return [f"{path} must be {_MUST_BE[kind]}{_range_of(root, loc)}, got {_short(value)}"]
    if kind in _BOUNDS:
        bound = _range_of(root, loc) or f" {error['msg'].removeprefix('Input should be ')}"
        info = _field_at(root, loc)
        number = "an integer" if info is not None and info.annotation is int else "a number"
        return [f"{path} must be {number}{bound}, got {_short(value)}"]
    if kind == "string_too_short":
        return [f"{path} must not be empty"]
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        most = "at least" if kind == "too_short" else "at most"
        return [f"{path} must have {most} {n} entr{'y' if n == 1 else 'ies'}, got {_short(value)}"]
    return [f"{path}: {error['msg']} (got {_short(value)})"]


def validation_problems(exc: Any, root: Any, hidden: Sequence[str] = ()) -> list[str]:
    """Every problem line of a pydantic ``ValidationError`` raised validating ``root``."""
    return [line for err in exc.errors() for line in describe_validation_error(err, root, hidden)]


def toml_module() -> Any:
    """``tomllib`` (Python 3.11+) or ``tomli``; a :class:`ConfigError` naming the fix when neither is there."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli
    except ImportError:
        raise ConfigError("reading TOML on Python 3.10 needs the 'tomli' package: pip install tomli") from None
    return tomli


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The tables of a TOML config file; a missing, unreadable or malformed file is one :class:`ConfigError` line."""
    toml, p = toml_module(), Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    try:
        return toml.loads(p.read_text(encoding="utf-8"))
    except (toml.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not valid TOML: {e}") from None
