"""Checkpoints: read once and safely, refused in one line when they do not fit, written atomically beside their
destination."""

from __future__ import annotations

import importlib
import io
import json
import pickle
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lit_mc.errors import LitMcError
from lit_mc.io import atomic_write_bytes
from lit_mc.moved import current_name
from lit_mc.settings import differences

FIX_CKPT = "pass a complete .ckpt file written by `lit-mc fit` (runs keep them in lightning_logs/*/checkpoints)"
LIGHTNING_NAMES = ("best", "last", "hpc", "registry")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into memory, then a temporary file in the destination's folder, fsync and rename.

    Lightning's own save stages the file in the system temp folder and moves it, which across file systems is a
    copy: on a full disk that leaves a truncated checkpoint under its final name. A rename in one folder cannot.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getbuffer())


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, without running pickled code; read from disk once per file version."""
    path = Path(path)
    if path.is_dir():
        raise LitMcError(f"checkpoint {path} is a folder", FIX_CKPT)
    if not path.is_file():
        raise LitMcError(f"checkpoint {path} does not exist", FIX_CKPT)
    stat = path.stat()
    return _read(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):  # the file names code to import and call
            named = re.search(r"GLOBAL ([\w.]+)", str(e))
            culprit = named.group(1) if named else "an unknown global"
            raise LitMcError(
                f"refusing checkpoint {path}: loading it would import and run code ({culprit})",
                "only load checkpoints written by `lit-mc fit`; lit-mc never unpickles code",
            ) from None
        raise LitMcError(f"cannot read checkpoint {path} (not a torch checkpoint)", FIX_CKPT) from None
    except Exception as e:  # truncated zip, not a torch file, ...
        raise LitMcError(
            f"cannot read checkpoint {path} ({type(e).__name__}: truncated or not a torch checkpoint)", FIX_CKPT
        ) from None


def check_checkpoint(path: str) -> None:
    """Fail early, in one line, on a checkpoint that is missing, unreadable or would need to run pickled code."""
    if path in LIGHTNING_NAMES or path.startswith("registry:"):
        return  # resolved later
    read_checkpoint(path)


def section_config(path: str | Path, key: str) -> dict[str, Any]:
    """The checkpoint's ``model`` or ``data`` section as a ``{class_path, init_args}`` config."""
    hyper = "hyper_parameters" if key == "model" else "datamodule_hyper_parameters"
    hparams = dict(read_checkpoint(path).get(hyper) or {})
    hparams.pop("_instantiator", None)
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        raise LitMcError(f"checkpoint {path} does not record its {key} class", "pass --config of its run")
    return {"class_path": current_name(class_path), "init_args": hparams}


def model_and_data_args(path: str) -> list[str]:
    """``--model`` and ``--data`` rebuilt from a checkpoint: ``lit-mc test --ckpt_path X`` needs no config."""
    return [f"--{key}={json.dumps(section_config(path, key))}" for key in ("model", "data")]


def checkpoint_epoch(path: str | Path) -> int:
    return int(read_checkpoint(path)["epoch"])


def evaluation_settings(class_path: str) -> tuple[str, ...]:
    """The model class's ``evaluation_settings``: hyperparameters that change how a trained model is evaluated
    (decoding), never its weights, so ``lit-mc test --ckpt_path`` may set them (none for a class without any)."""
    module, _, name = current_name(class_path).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return ()
    return tuple(getattr(cls, "evaluation_settings", ()))


def refuse_other_model(path: str | Path, model: dict[str, Any], may_differ: tuple[str, ...] = ()) -> None:
    """Stop when the checkpoint's model is not the configured one: Lightning would otherwise silently replace the
    configured model (its class and every setting) by the checkpoint's. Settings named in ``may_differ`` (the
    model's :func:`evaluation_settings`, at evaluation) are the caller's to keep."""
    saved = section_config(path, "model")
    wanted_class, held_class = current_name(str(model.get("class_path") or "")), saved["class_path"]
    if wanted_class and wanted_class != held_class:
        raise LitMcError(
            f"the checkpoint holds a {held_class.rsplit('.', 1)[-1]}, not the configured "
            f"{str(wanted_class).rsplit('.', 1)[-1]}",
            "pass the config of the checkpoint's run, or a checkpoint of the configured model",
        )
    differing = [key for key in differences(saved, model, "model.") if key.removeprefix("model.") not in may_differ]
    if differing:
        raise LitMcError(
            f"the checkpoint's model differs from the configured one in {', '.join(differing)}",
            "pass the config (and overrides) of the checkpoint's run, or start a new run without --ckpt_path",
        )
