"""The chapters of the book: one module per chapter (its Params, profiles, specs and claims)."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Any

from .. import config


def names() -> list[str]:
    """Names of every chapter module, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def module(chapter: str):
    """The module ``bnlib.chapters.<chapter>``; unknown names list the known ones."""
    known = names()
    if chapter not in known:
        hint = difflib.get_close_matches(chapter, known, n=1)
        raise ValueError(f"Unknown chapter {chapter!r}"
                         + (f"; did you mean {hint[0]!r}?" if hint else "")
                         + f" Known: {', '.join(known)}")
    return importlib.import_module(f"{__name__}.{chapter}")


def resolve(chapter: str, profile: str = "quick", **overrides: Any):
    """``config.resolve`` for the chapter named ``chapter``."""
    return config.resolve(module(chapter).Params, profile, **overrides)
