"""Lazy re-exports for a package's public surface (``relearn.shared.auth``, ``relearn.shared.fhir``).

A package lists ``name -> submodule`` and gets a module ``__getattr__``/``__dir__`` that import the
submodule on first use, so importing one submodule never pulls in the whole package (no import cycles
through the package's ``__init__``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``; resolved names are cached in ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        loaded = importlib.import_module(f"{package}.{module}")
        # A name that is its submodule's own name (``jsontext``) is the module itself.
        value = loaded if module == name else getattr(loaded, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
