"""Lazy package facades, and old module paths kept for one release.

A package's `__init__` names what it exports and where it lives; the
module is imported on first use, so importing the package (or the
`keras-ba` command line) does not start TensorFlow.

Example:
>>> getattr_, dir_, all_ = lazy_exports("demo", {"sqrt": "math"})
>>> getattr_("sqrt")(9.0), all_
(3.0, ['sqrt'])
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings


def lazy_exports(package, exports):
    """`(__getattr__, __dir__, __all__)` for a package exporting `exports`.

    Args:
        package: the package's dotted name (for error messages).
        exports: public name -> dotted module that defines it (a
            submodule `package.name` exports itself).

    Example:
    >>> getattr_, _, _ = lazy_exports("demo", {"pi": "math"})
    >>> round(getattr_("pi"), 2)
    3.14
    """

    def __getattr__(name):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if module == f"{package}.{name}":  # a submodule
            return importlib.import_module(module)
        return getattr(importlib.import_module(module), name)

    def __dir__():
        return (
            sorted(set(sys.modules[package].__dict__) | set(exports))
            if package in sys.modules
            else sorted(exports)
        )

    return __getattr__, __dir__, sorted(exports)


class _MovedModule(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `old` dotted names and hands out the module now at `new`."""

    def __init__(self, moves):
        self.moves = moves

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.moves:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = self.moves[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old path goes away in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module):
        """The module is already executed under its new name."""


def moved_modules(package, moves):
    """Keeps `package.<old>` importable as the module now at `moves[old]`.

    Importing an old path warns with a `DeprecationWarning` naming the new
    one and gives the very same module object.

    Args:
        package: the package the modules used to live in.
        moves: old module name (relative to `package`) -> new dotted name.

    Example:
    >>> import warnings
    >>> moved_modules("keras_ba.utils", {"old_lazy_demo": "keras_ba.utils.lazy"})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     from keras_ba.utils import old_lazy_demo
    >>> old_lazy_demo is sys.modules["keras_ba.utils.lazy"], caught[0].category.__name__
    (True, 'DeprecationWarning')
    """
    finder = _MovedModule({f"{package}.{old}": new for old, new in moves.items()})
    sys.meta_path.append(finder)
