"""Every subpackage's ``__all__`` is complete and exact (httpx's rule)."""

from __future__ import annotations

import importlib
import inspect
import types

import pytest

PACKAGES = [
    "cats_runtime",
    "cats_runtime.cas",
    "cats_runtime.records",
    "cats_runtime.execution",
    "cats_runtime.operations",
    "cats_runtime.service",
    "cats_runtime.errors",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = set(module.__all__)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and attr != "annotations"
        and (inspect.isclass(value) or inspect.isfunction(value) or attr.isupper())
    }
    assert public <= exported, f"public but not in __all__: {sorted(public - exported)}"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert not missing, f"in __all__ but not defined: {missing}"


def test_every_error_inherits_a_builtin() -> None:
    from cats_runtime import errors

    for attr in errors.__all__:
        cls = getattr(errors, attr)
        if cls is errors.CatsError:
            continue
        builtins_in_mro = [
            c
            for c in cls.__mro__
            if c.__module__ == "builtins" and c not in (object, Exception, BaseException)
        ]
        assert builtins_in_mro, f"{attr} inherits no builtin besides Exception"
