"""Loaded on first use, so that importing clara stays cheap: the public names of a package
(PEP 562), and contextlib behind the generator context managers."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # as typing's, without importing typing (start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import contextmanager as contextmanager


def lazy_names(
    package: str, where: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose name N lives in module `where[N]`.

    A name is imported when first used and then kept in the package, so later uses cost
    nothing.
    """

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # __import__, not importlib.import_module: importlib (and the warnings module it
        # loads) would cost every `clara` start-up ~0.3 ms for this one call.
        qualified = f"{package}.{module}"
        __import__(qualified)
        value = getattr(sys.modules[qualified], name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__


if not TYPE_CHECKING:

    def contextmanager(generator: Callable) -> Callable:
        """contextlib.contextmanager, importing contextlib (with functools and collections:
        ~2 ms of a `clara map` copy's start-up, which only defines such methods) at the
        first call of the decorated function."""
        made = None

        def call(*args: object, **kwargs: object) -> object:
            nonlocal made
            if made is None:
                import contextlib

                made = contextlib.contextmanager(generator)
            return made(*args, **kwargs)

        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(call, attribute, getattr(generator, attribute))
        call.__wrapped__ = generator
        return call
