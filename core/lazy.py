"""Package namespaces whose names are imported from their modules on first use (PEP 562), so that
importing one light module of a package (a model card, the rule names, where a dataset's files
are) does not import torch with the rest of it: the dashboard's first page is drawn before torch
is imported."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def exports(package: str, sources: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable, list[str]]:
    """(``__getattr__``, ``__dir__``, ``__all__``) for ``package``: each name in ``sources``
    (module -> names) is imported from its module when first read, then kept on the package."""
    where = {name: module for module, names in sources.items() for name in names}

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__, sorted(where)
