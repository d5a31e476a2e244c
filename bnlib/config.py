"""Chapter parameters: profiles (smoke, quick, paper) and validation on arrival.

Each chapter module in ``bnlib.chapters`` defines a frozen dataclass ``Params`` whose
defaults are the ``quick`` profile, with constraints held as data in each field's metadata
(the scikit-learn idea), plus ``PROFILES`` (overrides per profile) and ``KEY_SETTINGS``.
``resolve`` validates every value before any training, with messages of one shape:
"Parameter 'lr' of chapter 'training' must be a float in (0, 10]; got -1. Example: -p lr 0.1".
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class Interval:
    """A number of type ``kind`` in the interval from ``low`` to ``high``."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        fmt = (lambda v: f"{int(v)}") if self.kind is int else (lambda v: f"{v:g}")
        lo = "-inf" if self.low is None else fmt(self.low)
        hi = "inf" if self.high is None else fmt(self.high)
        lb = "(" if self.low_open or self.low is None else "["
        rb = ")" if self.high_open or self.high is None else "]"
        return f"{'an int' if self.kind is int else 'a float'} in {lb}{lo}, {hi}{rb}"

    def check(self, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError
        if self.kind is int and not (isinstance(v, int) or float(v).is_integer()):
            raise TypeError
        v = self.kind(v)  # papermill turns "-p lr 1" into the int 1: coerce where a float is meant
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            raise ValueError
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            raise ValueError
        return v


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    values: tuple

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def check(self, v: Any) -> Any:
        if v not in self.values or isinstance(v, bool) != any(isinstance(x, bool) for x in self.values):
            raise ValueError
        return v


@dataclass(frozen=True)
class ListOf:
    """A non-empty list of values, each satisfying ``item``; stored as a tuple."""

    item: Interval | OneOf
    min_len: int = 1

    def describe(self) -> str:
        return f"a list of at least {self.min_len}, each {self.item.describe()}"

    def check(self, v: Any) -> Any:
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise TypeError
        v = tuple(self.item.check(x) for x in v)
        if len(v) < self.min_len:
            raise ValueError
        return v


def param(default: Any, constraint: Interval | OneOf | ListOf, help: str) -> Any:
    """A chapter parameter: its quick-profile default, its constraint and a help text
    giving the unit and the origin, "(paper)", "(seed 00x)" or "(choice)"."""
    return field(default=default, metadata={"constraint": constraint, "help": help})


@dataclass(frozen=True)
class ChapterParams:
    """Fields every chapter has: the profile it was resolved from, the seed and the device."""

    profile: str = param("quick", OneOf(PROFILES), "profile the defaults come from")
    seed: int = param(0, Interval(int, 0, 2**31 - 1), "random seed (choice)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device (auto: CUDA, MPS, CPU)")


def chapter_of(params_cls: type) -> str:
    """The chapter a ``Params`` class belongs to: the last part of its module's name."""
    return params_cls.__module__.rsplit(".", 1)[-1]


def spec_module(params_cls: type):
    """The module that defines ``params_cls`` (its ``PROFILES`` and ``KEY_SETTINGS``)."""
    return sys.modules[params_cls.__module__]


def fields(params_cls: type) -> dict[str, dataclasses.Field]:
    """The chapter's parameters by name."""
    return {f.name: f for f in dataclasses.fields(params_cls)}


def _example(f: dataclasses.Field) -> str:
    return f"-p {f.name} {f.default}"


def check_value(chapter: str, f: dataclasses.Field, value: Any) -> Any:
    """Validate one value; raise with the parameter, the value and what is allowed."""
    c = f.metadata["constraint"]
    try:
        return c.check(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"Parameter {f.name!r} of chapter {chapter!r} must be {c.describe()}; "
            f"got {value!r}. Example: {_example(f)}") from None


def suggest(name: str, known) -> list[str]:
    """The known name the user most likely meant: one that is a whole word of ``name``
    (``lr_rate`` -> ``lr``), else the closest spelling (``num_step`` -> ``num_steps``)."""
    words = [k for k in known if k in name.split("_")]
    return sorted(words, key=len)[-1:] or difflib.get_close_matches(name, known, n=1)


def check_names(params_cls: type, names) -> None:
    """Raise on the first unknown parameter name, suggesting the closest known one."""
    known, chapter = fields(params_cls), chapter_of(params_cls)
    for name in names:
        if name not in known:
            hint = suggest(name, known)
            raise ValueError(
                f"Unknown parameter {name!r} for chapter {chapter!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" Known: {', '.join(sorted(known))}")


def resolve(params_cls: type, profile: str = "quick", **overrides: Any):
    """The chapter's validated ``Params`` for ``profile`` with ``overrides`` applied.

    An override of ``None`` means "the profile's value" (so a notebook's parameters cell
    can list every name). Unknown names, wrong types and out-of-range values raise.
    """
    chapter, known = chapter_of(params_cls), fields(params_cls)
    check_value(chapter, known["profile"], profile)
    check_names(params_cls, overrides)
    profiles = getattr(spec_module(params_cls), "PROFILES", {})
    values = {**profiles.get(profile, {}), **{k: v for k, v in overrides.items() if v is not None}}
    values["profile"] = profile
    return params_cls(**{k: check_value(chapter, known[k], v) for k, v in values.items()})


_NOT_PARAMETERS = {"In", "Out", "exit", "quit", "get_ipython"}
_LITERALS = (bool, int, float, str, list, tuple, dict, type(None))


def resolve_cell(params_cls: type, namespace: dict[str, Any]):
    """``resolve`` from a notebook's globals: the parameters cell plus papermill's injected one.

    Papermill only logs a parameter the notebook does not define; here any literal in the
    namespace that is no parameter (a typo such as ``-p lr_rate 0.1``) raises, with a hint.
    """
    known = fields(params_cls)
    stray = sorted(k for k, v in namespace.items() if k not in known and not k.startswith("_")
                   and k not in _NOT_PARAMETERS and isinstance(v, _LITERALS))
    check_names(params_cls, stray)
    values = {k: namespace[k] for k in known if k in namespace and k != "profile"}
    return resolve(params_cls, namespace.get("profile", "quick"), **values)


def params_cell(params_cls: type) -> str:
    """The source of a notebook's parameters cell, generated from ``params_cls``: every
    parameter set to None ("the profile's value"), with its help text as a comment."""
    lines = ['profile = "quick"  # smoke | quick | paper']
    for name, f in fields(params_cls).items():
        if name != "profile":
            lines.append(f"{name} = None  # {f.metadata['help']}")
    return "\n".join(lines)


def as_dict(cfg) -> dict[str, Any]:
    """Plain dict of a resolved config (tuples become lists, JSON-ready)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
