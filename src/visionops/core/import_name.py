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
  very same modules, so those artifacts still load;
- a module's name from before the library was layered (`MOVED`:
  `visionops.materializers`, `visionops.mlflow_model`, ...) imports as the module it
  became, so artifacts and registered models that recorded the old name still load.
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

# Old module name -> the module it became when the library was layered
# (core/ engine/ tasks/ ... app/). Stores and registered models name the old ones.
MOVED = {
    "visionops.env": "visionops.core.env",
    "visionops.names": "visionops.core.names",
    "visionops.images": "visionops.core.images",
    "visionops.fsutil": "visionops.core.files",
    "visionops.parallel": "visionops.core.parallel",
    "visionops.console": "visionops.core.console",
    "visionops.background": "visionops.core.background",
    "visionops.import_name": "visionops.core.import_name",
    "visionops.tasks.base": "visionops.engine.task",
    "visionops.training.evaluate": "visionops.engine.report",
    "visionops.training.latency": "visionops.engine.latency",
    "visionops.inference": "visionops.engine.onnx",
    "visionops.quantize": "visionops.engine.quantize",
    "visionops.mlflow_model": "visionops.tasks.detect.pyfunc",
    "visionops.batch_report": "visionops.batch.report",
    "visionops.champion": "visionops.training.champion",
    "visionops.tasks.segment.masks": "visionops.data.masks",
    "visionops.lookup": "visionops.app.lookup",
    "visionops.preflight": "visionops.app.preflight",
    "visionops.registry": "visionops.app.registry",
    "visionops.status": "visionops.app.status",
    "visionops.dashboards": "visionops.app.dashboards",
    "visionops.stacks": "visionops.app.stacks",
    "visionops.docker": "visionops.app.docker",
    "visionops.materializers": "visionops.app.materializers",
    "visionops.backup": "visionops.app.backup",
}


def _moved(name: str) -> str | None:
    """The current name of a module recorded under its name before the move."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


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
        name = fullname.removeprefix(_OLD_PREFIX)
        if name != fullname and _ours(name) or _moved(name):
            real = importlib.import_module(_moved(name) or name)
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
