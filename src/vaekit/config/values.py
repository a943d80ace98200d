"""Turning a value from the command line, a config file or a saved config.json into a Config
field's type, with a one-line error naming the field; reading YAML/JSON config files."""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from vaekit.errors import ConfigError


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _unknown(what: str, value: Any, choices: typing.Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}; choose from: {', '.join(map(str, choices))}"


def _literal_choices(tp: Any) -> tuple[Any, ...]:
    tp = _resolve(tp)
    return get_args(tp) if get_origin(tp) is Literal else ()


def _resolve(tp: Any) -> Any:
    if isinstance(tp, str):  # `from __future__ import annotations` leaves strings
        return eval(tp, vars(typing), {"Literal": Literal})
    return tp


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def coerce(f: dataclasses.Field[Any], value: Any, *, source: str = "config",
           prefix: str = "") -> Any:
    """Convert a value from a file or the command line to the field's type, or raise ConfigError
    (naming the flag --PREFIX-NAME)."""
    tp = _resolve(f.type)
    flag = f"--{prefix}{_flag(f.name)}"
    try:
        if get_origin(tp) is dict:
            if not isinstance(value, dict):
                raise ValueError
            return {str(k): dict(v) if isinstance(v, dict) else v for k, v in value.items()}
        if get_origin(tp) is Literal:
            return str(value)
        if tp is bool or tp == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if get_origin(tp) is tuple:
            if isinstance(value, str):
                parts = [p for p in value.replace(" ", "").split(",") if p]
            elif isinstance(value, (list, tuple)):
                parts = list(value)
            else:
                raise ValueError
            if get_args(tp)[:1] == (str,):
                return tuple(str(p) for p in parts)
            out = []
            for p in parts:
                if isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()):
                    raise ValueError
                out.append(int(p))
            return tuple(out)
        if value is None:
            return None
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {flag} got {value!r}, which is not a valid "
                          f"{getattr(tp, '__name__', str(tp))}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file (safe loading only: no object construction)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text") from None
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {path} is not valid {path.suffix or 'YAML'}: "
                          f"{str(e).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option names to values")
    return values
