"""Class paths from before the package took its task-package layout, still honoured.

Configs, checkpoints (their hyper-parameters record ``_class_path``) and stored results cells written earlier name
classes such as ``lit_mc.models.ConvNet``. Those names keep working: the old modules exist as aliases whose
attributes are the moved classes, :func:`current_names` turns them into today's names wherever configs are
compared, and :func:`first_names` turns today's names back when a config is hashed into a results-cell key, so
that every stored cell keeps its key and nothing under ``results/`` moves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

MOVED = {
    "lit_mc.classifier.ImageClassifier": "lit_mc.classification.ImageClassifier",
    "lit_mc.data.CIFAR10DataModule": "lit_mc.classification.CIFAR10DataModule",
    "lit_mc.models.ConvNet": "lit_mc.classification.ConvNet",
    "lit_mc.models.FastNet": "lit_mc.classification.FastNet",
    "lit_mc.models.TimmClassifier": "lit_mc.classification.TimmClassifier",
    "lit_mc.callbacks.Lookahead": "lit_mc.classification.Lookahead",
    "lit_mc.callbacks.PredictionWriter": "lit_mc.classification.PredictionWriter",
}
FIRST = {new: old for old, new in MOVED.items()}
ALIAS_MODULES = {path.rpartition(".")[0] for path in MOVED} - {"lit_mc.callbacks"}  # modules that are gone


def resolve(old: str) -> Any:
    """The object an old class path names now (``AttributeError`` for a name that never moved)."""
    if old not in MOVED:
        module, _, name = old.rpartition(".")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    module, _, name = MOVED[old].rpartition(".")
    return getattr(importlib.import_module(module), name)


def _rename(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: names.get(v, v) if k == "class_path" and isinstance(v, str) else _rename(v, names)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_rename(v, names) for v in value]
    return value


def current_names(config: Any) -> Any:
    """``config`` with every old ``class_path`` replaced by today's name."""
    return _rename(config, MOVED)


def first_names(config: Any) -> Any:
    """``config`` with every moved ``class_path`` replaced by its first name (what results cells are keyed on)."""
    return _rename(config, FIRST)


def current_name(class_path: str) -> str:
    return MOVED.get(class_path, class_path)


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports of the gone modules (``lit_mc.models``, ...) give a module whose attributes are the moved classes."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in ALIAS_MODULES else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, f"Old name of the classes now in lit_mc.classification ({__name__}).")
        module.__getattr__ = lambda name: resolve(f"{spec.name}.{name}")  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())  # before the path finder: no stray folder shadows an alias
