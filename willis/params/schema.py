"""The params loader's machinery: dataclass building, type checks, range checks, the error type.

``build(cls, mapping, prefix)`` turns one mapping of ``params.yaml`` into the frozen dataclass
``cls``: an unknown, missing or ill-typed key raises ``ParamsError`` with the dotted key name, e.g.
``train.ct.lr: expected float, got str ('fast')``; then the dataclass's own ``check()`` runs its
range checks (``require``). Section modules (``willis/params/<section>.py``) import from here;
``willis.params.load`` reads the file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    """A params file or section that does not match its dataclass; the message names the key."""


def _type_name(tp: Any) -> str:
    """``int`` -> 'int'; ``Optional[int]`` -> 'int or null'; ``Literal['a', 'b']`` -> "'a' or 'b'"."""
    args = get_args(tp)
    if get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in args)
    if args and get_origin(tp) in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (lists -> tuples, dicts -> dataclasses)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping for section {tp.__name__}, got {type(value).__name__}")
        return build(tp, value, key)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ParamsError(f"{key}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arm in get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(value, arm, key)
            except ParamsError as e:
                errors.append(str(e))
        raise ParamsError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} ({value!r})")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__} ({value!r})")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ParamsError(f"{key}: expected a list of {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        return tuple(_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(k, kt, f"{key}.<key>"): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected bool (true/false), got {type(value).__name__} ({value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected int, got {type(value).__name__} ({value!r})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected float, got {type(value).__name__} ({value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected str, got {type(value).__name__} ({value!r})")
        return value
    raise TypeError(f"{key}: unsupported annotation {tp!r} in a params dataclass")


def build(cls: type[T], mapping: dict, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``mapping``; unknown, missing or ill-typed keys raise ParamsError."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        names = ", ".join(f"{prefix}.{k}" if prefix else k for k in unknown)
        raise ParamsError(f"unknown key(s) {names}; {cls.__name__} accepts: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in mapping:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamsError(f"{key}: missing (required by {cls.__name__})")
            continue
        kwargs[name] = _convert(mapping[name], hints[name], key)
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if check is not None:  # section-specific range checks; they raise ParamsError naming the key
        check()
    return obj


def require(cond: bool, key: str, why: str) -> None:
    """Range-check helper for ``check()`` methods: ``require(self.lr > 0, "train.ct.lr", "must be > 0")``."""
    if not cond:
        raise ParamsError(f"{key}: {why}")


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise ParamsError(f"{path}: params file not found") from e
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return data
