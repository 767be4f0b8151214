"""Importing anny without loading TorchDynamo.

anny's rotation library, roma, wraps two autograd functions in
``torch._dynamo.disable`` when it is imported. That is the only use of
TorchDynamo anny makes at import, yet importing ``torch._dynamo`` takes ~1 s
on a 2-core CPU (a fifth of a one-photo ``openhmr demo``), and an eager fit
never calls those wrappers: roma reaches them only while ``torch.compile``
traces a function under a functorch transform.

:func:`import_anny` imports anny with a stand-in for ``torch._dynamo`` whose
``disable(fn)`` returns a function that applies the real
``torch._dynamo.disable`` to ``fn`` the first time it is called, and whose
every other attribute loads the real module and answers from it. The stand-in
is removed as soon as the import ends, so a later ``import torch._dynamo`` or
``torch.compile`` gets the real module. Where TorchDynamo is already loaded,
anny is imported as usual.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch

_DYNAMO = "torch._dynamo"


def _real_dynamo() -> types.ModuleType:
    """The real ``torch._dynamo``, imported now if only the stand-in is in place."""
    if isinstance(sys.modules.get(_DYNAMO), _DeferredDynamo):
        del sys.modules[_DYNAMO]
    return importlib.import_module(_DYNAMO)


def _deferred_disable(fn: Callable[..., Any] | None = None, *args: Any,
                      **kwargs: Any) -> Callable[..., Any]:
    """``torch._dynamo.disable(fn)``, applied to ``fn`` at its first call.

    Any other form of the call (as a decorator factory, or with options) is
    handed to the real ``disable`` at once.
    """
    if fn is None or args or kwargs:
        return _real_dynamo().disable(fn, *args, **kwargs)
    disabled: Callable[..., Any] | None = None

    @functools.wraps(fn)
    def call(*call_args: Any, **call_kwargs: Any) -> Any:
        nonlocal disabled
        if disabled is None:
            disabled = _real_dynamo().disable(fn)
        return disabled(*call_args, **call_kwargs)

    return call


class _DeferredDynamo(types.ModuleType):
    """Stands for ``torch._dynamo`` during anny's import (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(_DYNAMO)
        self.disable = _deferred_disable

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_dynamo(), name)


@contextlib.contextmanager
def deferred_dynamo() -> Iterator[None]:
    """Within the block, importing ``torch._dynamo`` gives the stand-in."""
    if _DYNAMO in sys.modules:
        yield
        return
    stand_in = _DeferredDynamo()
    sys.modules[_DYNAMO] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_DYNAMO) is stand_in:
            del sys.modules[_DYNAMO]
        if vars(torch).get("_dynamo") is stand_in:
            delattr(torch, "_dynamo")


def import_anny() -> types.ModuleType:
    """``import anny`` (and ``anny.paths``) without loading TorchDynamo.

    Raises:
        ImportError: anny (or one of its dependencies) is not installed.
    """
    with deferred_dynamo():
        import anny
        import anny.paths  # noqa: F401  (get_anny sets the cache path through it)
    return anny
