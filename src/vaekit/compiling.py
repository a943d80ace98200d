"""torch.compile with a way back: where compilation fails (no C++ compiler, an unsupported
op), warn once and run the function eagerly, rather than stop a run with a compiler traceback."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch

T = TypeVar("T")


class CompiledOrEager(Generic[T]):
    """Calls `torch.compile(fn)`, or `fn` itself once compilation has failed."""

    def __init__(self, fn: Callable[..., T], what: str, **options: Any) -> None:
        self.eager, self.what = fn, what
        self.compiled: Callable[..., T] | None = torch.compile(fn, **options)

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as e:  # tracing or compiling failed
                # (never an error of the compiled code's run, such as running out of memory:
                # that propagates, and so does a real error in the function, which the eager
                # retry raises again)
                first_line = str(e).splitlines()[0] if str(e) else ""
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {first_line}); "
                              f"{self.what} eagerly", RuntimeWarning, stacklevel=2)
                self.compiled = None
        return self.eager(*args, **kwargs)
