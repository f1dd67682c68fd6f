"""One import name, `visionops.*`, for every class ZenML records in an artifact.

ZenML records an artifact's type (and its materializer) as an import path. For a file
under its source root (the folder holding `.zen/`, which `make init` creates in this
checkout) it derives that path from the file's location, so the editable install's
`src/visionops/data/version.py` became `src.visionops.data.version`: a second copy
of the module on loading, whose `DatasetVersion` no materializer knows
("Unable to load type <class 'src.visionops.data.version.DatasetVersion'>").

`install()` (run by `import visionops`, before any ZenML import) fixes both sides:

- every class defined in a `visionops` module answers ZenML's `__zenml_source__`
  lookup with its real import name, whatever the working directory or `sys.path`;
- `src.visionops.*`, as stores written before this fix recorded it, imports as the
  very same modules, so those artifacts still load.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = "visionops"
_OLD_PREFIX = "src."  # the name ZenML derived from the checkout's folder layout
ATTRIBUTE = "__zenml_source__"  # zenml.utils.source_utils.ZENML_SOURCE_ATTRIBUTE_NAME


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _ImportName:
    """ZenML's source for the class it is read from, when that class is ours."""

    def __get__(self, instance: Any, owner: type) -> Any:
        module = sys.modules.get(owner.__module__)
        if (
            instance is not None
            or not _ours(owner.__module__)
            or getattr(module, owner.__qualname__, None) is not owner
        ):
            # A subclass defined elsewhere (or a nested class) resolves as usual.
            raise AttributeError(ATTRIBUTE)
        from zenml.config.source import Source, SourceType

        # UNKNOWN: loaded by a plain import, as ZenML does for a package outside
        # its source root (the tests, a non-editable install, a container image).
        return Source(
            module=owner.__module__,
            attribute=owner.__qualname__,
            type=SourceType.UNKNOWN,
        )


def pin_classes(module: ModuleType) -> None:
    """Gives every class defined in `module` its `visionops.*` import name."""
    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and value.__module__ == module.__name__
            and ATTRIBUTE not in vars(value)
        ):
            try:
                setattr(value, ATTRIBUTE, _ImportName())
            except (AttributeError, TypeError):  # pragma: no cover - a frozen type
                continue


class _PinningLoader(importlib.abc.Loader):
    """Runs the real loader, then pins the classes the module defined."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        pin_classes(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ...
        return getattr(self._loader, name)


class _AliasLoader(importlib.abc.Loader):
    """Hands out an already imported module under a second name."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self._module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module was executed under its real name."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.startswith(_OLD_PREFIX) and _ours(fullname[len(_OLD_PREFIX) :]):
            real = importlib.import_module(fullname[len(_OLD_PREFIX) :])
            return importlib.util.spec_from_loader(
                fullname, _AliasLoader(real), is_package=hasattr(real, "__path__")
            )
        if not _ours(fullname) or fullname == PACKAGE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and not isinstance(
                    spec.loader, _PinningLoader
                ):
                    spec.loader = _PinningLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Puts the finder first on `sys.meta_path` (once) and pins loaded modules."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name, module in list(sys.modules.items()):
        if _ours(name) and isinstance(module, ModuleType):
            pin_classes(module)
