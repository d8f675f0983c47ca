"""Package-level lazy names (PEP 562): one helper for every package that defers heavy imports.

A package lists ``_EXPORTS = {public name: module}`` and ends with::

    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

The module of a name is imported on first use (so ``import epi_spineage.model`` does not import
torch, and ``import epi_spineage.stats`` does not load every analysis) and the value is cached in the
package's namespace. A module written without a dot is a submodule of the package (``"bias"`` ->
``epi_spineage.model.bias``); a dotted one is absolute (``"epi_spineage.db.schema"``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that resolve the names of ``exports`` on first use."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module if "." in module else f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
