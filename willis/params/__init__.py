"""Typed, validated access to ``params.yaml``: the one door every knob comes through.

Each top-level section of ``params.yaml`` becomes a frozen dataclass, declared in its own module
beside this one (``willis/params/<section>.py``); the machinery that builds and checks them is
``willis.params.schema``. ``load()`` reads the file once and checks every key: an unknown key, a
missing key or a value of the wrong type raises ``ParamsError`` with the dotted key name, e.g.
``params.yaml: train.ct.lr: expected float, got str ('fast')``. The defaults of the dataclasses
equal the values ``params.yaml`` sets (``tests/params/test_schema.py`` checks it), so code that
builds a section without the file gets the pipeline's own defaults.

    >>> from willis.params import load
    >>> p = load("params.yaml")
    >>> p.project.size, p.smoke
"""

from __future__ import annotations

from pathlib import Path

from willis.params.root import Params
from willis.params.schema import ParamsError, build, read_yaml, require

__all__ = ["Params", "ParamsError", "build", "load", "read_yaml", "require"]


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file into a frozen ``Params``."""
    data = read_yaml(path)
    try:
        return build(Params, data)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
