"""Old keyword spellings of the statistics functions, kept working with a ``DeprecationWarning``.

One name per concept (docs/conventions.md#names): the confidence level is ``ci_level`` (the column of
every tidy result), the accelerated cut's comparison is ``cut_rule`` (``">="`` or ``">"``), as in the
report's TOML and the database's ``cutpoints`` table.
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from epi_spineage.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])

CUT_RULES = (">=", ">")


def ci_level_keyword(func: F) -> F:
    """Let ``func`` take ``ci_level=`` and, deprecated, ``level=``.

    The wrapped function may still name its parameter ``level`` (the wrapper presents ``ci_level`` in
    its signature and passes the value under the function's own name), so a module can be renamed
    inside later without changing its callers.
    """
    sig = inspect.signature(func)
    inner = "ci_level" if "ci_level" in sig.parameters else "level"
    if inner not in sig.parameters:
        raise TypeError(f"{func.__qualname__} has no ci_level/level parameter")
    shown = sig.replace(
        parameters=[p.replace(name="ci_level") if p.name == "level" else p for p in sig.parameters.values()]
    )

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "level" in kwargs:
            if "ci_level" in kwargs:
                raise TypeError(f"{func.__name__}() got both ci_level and its old name level")
            # Warn the user, not the package: modules not yet renamed inside (stats/cox.py) still pass level=.
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if not caller.startswith("epi_spineage.stats"):
                warnings.warn(
                    f"{func.__name__}(level=...) is deprecated; use ci_level=", DeprecationWarning, stacklevel=2
                )
            kwargs["ci_level"] = kwargs.pop("level")
        if inner == "level" and "ci_level" in kwargs:
            kwargs["level"] = kwargs.pop("ci_level")
        return func(*args, **kwargs)

    wrapper.__signature__ = shown  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def resolve_cut_rule(cut_rule: str | bool, strict: bool | None, where: str) -> str:
    """The cut rule from ``cut_rule`` or the deprecated ``strict`` (True = ``">"``, False = ``">="``).

    A bool passed where ``cut_rule`` now stands (the old third positional argument ``strict``) is read
    as ``strict`` too, with the same warning.
    """
    if isinstance(cut_rule, bool):
        strict, cut_rule = cut_rule, ">="
    if strict is not None:
        warnings.warn(
            f"{where}(strict=...) is deprecated; use cut_rule='>' (strict=True) or '>=' (strict=False)",
            DeprecationWarning,
            stacklevel=3,
        )
        if cut_rule != ">=":
            raise UserError(f"{where}: give cut_rule or the old strict, not both")
        return ">" if strict else ">="
    if cut_rule not in CUT_RULES:
        raise UserError(f"{where}: cut_rule must be '>=' or '>', got {cut_rule!r}")
    return cut_rule
