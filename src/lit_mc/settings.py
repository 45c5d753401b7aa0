"""What a resolved config *sets*: the config with every value that equals its class's default left out.

A resolved LightningCLI config spells out every option, so it changes whenever a release adds one (Lightning or
lit-mc), although nothing about the run changed. What differs from the defaults is stable across such upgrades:
results cells are keyed on it, resumed runs are matched on it, and a checkpoint's model is compared on it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from functools import cache
from pathlib import PurePath
from typing import Any

from lit_mc.moved import current_name

_MISSING = object()


@cache
def _class(class_path: str) -> type | None:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


@cache
def _parameters(class_path: str) -> dict[str, tuple[Any, type | None]]:
    """``name -> (default, dataclass type or None)`` of the ``__init__`` keywords of ``class_path`` and its bases."""
    cls = _class(class_path)
    found: dict[str, tuple[Any, type | None]] = {}
    for klass in reversed(cls.__mro__ if isinstance(cls, type) else ()):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # noqa: BLE001 - annotations that cannot be evaluated carry no dataclass
            hints = {}
        for p in inspect.signature(init).parameters.values():
            if p.default is not inspect.Parameter.empty:
                found[p.name] = (p.default, _dataclass_in(hints.get(p.name)))
    return found


def _dataclass_in(annotation: Any) -> type | None:
    """The dataclass an annotation names (``Augmentation | None`` -> ``Augmentation``)."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    return next((a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)), None)


def _plain(value: Any) -> Any:
    """A default as it appears in a YAML config: dataclasses as dicts, tuples as lists, paths as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def set_values(value: Any) -> Any:
    """``value`` with every ``init_args`` entry equal to its class's default removed, recursively.

    Also leaves out the fields of a dataclass-typed option (``augment``) that keep their defaults, and the option
    itself when none is left.
    """
    if isinstance(value, list | tuple):
        return [set_values(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "class_path" not in value:
        return {k: set_values(v) for k, v in value.items()}
    class_path = current_name(str(value["class_path"]))  # an old name and its new one set the same thing
    parameters = _parameters(class_path)
    kept = {}
    for key, given in (value.get("init_args") or {}).items():
        given = set_values(given)
        default, datacls = parameters.get(key, (_MISSING, None))
        if default is not _MISSING and given == _plain(default):
            continue
        if datacls is not None and isinstance(given, dict):
            fields = _plain(datacls())
            given = {k: v for k, v in given.items() if fields.get(k, _MISSING) != v}
            if not given:
                continue
        kept[key] = given
    return {"class_path": class_path, "init_args": kept}


def differences(saved: Any, wanted: Any, prefix: str = "") -> list[str]:
    """The dotted keys at which two config sections set different values (defaults count as unset)."""
    return _differences(set_values(saved), set_values(wanted), prefix)


def _differences(saved: Any, wanted: Any, prefix: str) -> list[str]:
    if not (isinstance(saved, dict) and isinstance(wanted, dict)):
        return [] if saved == wanted else [prefix.rstrip(".") or "(the whole section)"]
    found = []
    for key in sorted(set(saved) | set(wanted), key=str):
        inner = prefix if key == "init_args" else f"{prefix}{key}."  # init_args adds no level to the names
        if key not in saved or key not in wanted:
            found.append(inner.rstrip(".") or "(the whole section)")
        else:
            found += _differences(saved[key], wanted[key], inner)
    return found


def same_settings(saved: Any, wanted: Any) -> bool:
    """Whether a run's saved config section sets what ``wanted`` sets. An option that the saved config lacks (the
    run predates it) matches when ``wanted`` gives it its default, so upgrading lit-mc does not orphan earlier
    runs; an option that the saved config has and the class no longer knows does not match."""
    return set_values(saved) == set_values(wanted)


def run_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """What a whole resolved ``fit`` config sets: sections without their defaults (the trainer's against
    ``Trainer``), and top-level options left unset (``None``) dropped. Results cells are keyed on this."""
    kept = {}
    for key, value in resolved.items():
        if key == "trainer" and isinstance(value, dict):
            value = set_values({"class_path": "lightning.pytorch.Trainer", "init_args": value})["init_args"]
        else:
            value = set_values(value)
        if value is not None:
            kept[key] = value
    return kept
