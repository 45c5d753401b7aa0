"""Run folders that belong to one run: ``<root>/version_N`` claimed with an atomic ``mkdir``.

Lightning's file loggers pick ``version_N`` by listing the folders that exist, so two processes started together
(``--jobs 2``, two shells, Ray workers on a shared file system) pick the same number and write into each other's
files. ``os.mkdir`` either creates a folder or fails because it exists, on every POSIX file system (NFS too), so
claiming the number by creating the folder gives each run its own, whatever the logger.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
from pathlib import Path
from typing import Any

from lit_mc.errors import LitMcError

VERSION = re.compile(r"version_(\d+)$")
FILE_LOGGERS = ("CSVLogger", "TensorBoardLogger")
SCAFFOLD = {"config.yaml", "hparams.yaml"}  # what a run writes before its first epoch
_MADE_FOR: dict[Path, list[Path]] = {}


INHERITED = "LIT_MC_RUN_DIRS"  # root -> folder claimed by the first process of a data-parallel run


def _launched_by_lightning() -> bool:
    """A process that Lightning started for data parallelism (rank > 0): it runs the command line again."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def claim_run_dir(root: str | Path) -> Path:
    """Create and return ``root/version_N`` for the smallest free ``N`` above every existing one.

    Under Lightning DDP the other processes re-run the command: they get the folder the first one claimed (passed
    down in the environment), so a run over several processes is one folder."""
    root = Path(root)
    inherited = json.loads(os.environ.get(INHERITED, "{}"))
    if _launched_by_lightning() and str(root.resolve()) in inherited:
        return Path(inherited[str(root.resolve())])
    folder = _claim_new(root)
    inherited[str(root.resolve())] = str(folder)
    os.environ[INHERITED] = json.dumps(inherited)  # read only by processes that Lightning launches from this one
    return folder


def _claim_new(root: Path) -> Path:
    missing = [p for p in (root, *root.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "Permission denied")
    except OSError as e:
        raise _unwritable(root, e) from None
    taken = [int(m.group(1)) for p in root.iterdir() if (m := VERSION.match(p.name))]
    number = max(taken, default=-1) + 1
    while True:
        folder = root / f"version_{number}"
        try:
            folder.mkdir()
            _MADE_FOR[folder] = missing  # so that releasing the folder also removes the parents made for it
            return folder
        except FileExistsError:  # another process claimed it between the listing and now
            number += 1
        except OSError as e:
            raise _unwritable(root, e) from None


def _unwritable(folder: Path, error: OSError) -> LitMcError:
    return LitMcError(
        f"cannot write run folders in {folder} ({error.strerror or error})",
        "make it writable, or pass another folder with --trainer.logger.init_args.save_dir DIR",
    )


def check_writable(folder: Path) -> None:
    """Fail before training when a run would continue in a folder it cannot write (a resumed run, say)."""
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise LitMcError(f"run folder {folder} is not writable", "make it writable (chmod u+w) or copy the run")


def _init_args(logger: Any) -> tuple[str, Any] | None:
    """``(class name, init_args)`` of a logger given as a ``{class_path, init_args}`` mapping, else ``None``."""
    if not hasattr(logger, "get") or not logger.get("class_path"):
        return None
    if logger.get("init_args") is None:
        logger["init_args"] = {}
    return str(logger["class_path"]).rsplit(".", 1)[-1], logger["init_args"]


def file_logger_root(init: Any) -> Path:
    """``save_dir/name`` of a CSV or TensorBoard logger's ``init_args``: the folder holding its ``version_*`` runs."""
    name = init.get("name", "lightning_logs")
    return Path(init.get("save_dir") or ".") / (name or "")


def claim_logger_folders(trainer: Any) -> list[Path]:
    """Give every logger of the ``trainer`` config section a run folder of its own; returns the folders claimed.

    CSV and TensorBoard loggers get ``version=version_N`` (unless a version is set, as on resume); a W&B (or any
    other) logger gets ``save_dir=<save_dir>/lightning_logs/version_N``, so that ``trainer.log_dir``, and with it
    every file of the run, is that folder and never the working directory; beside a file logger it writes into that
    logger's run folder (one folder per run). Loggers that share a root share the claimed version, so a CSV and a
    TensorBoard logger of one run write side by side.
    """
    loggers = trainer.get("logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    found = [f for f in map(_init_args, loggers) if f is not None]
    found.sort(key=lambda f: f[0] not in FILE_LOGGERS)  # file loggers first: the others join their run folder
    claimed: dict[Path, Path] = {}
    for name, init in found:
        if name in FILE_LOGGERS:
            if init.get("version") is not None:
                continue
            root = file_logger_root(init)
            if root not in claimed:
                claimed[root] = claim_run_dir(root)
            init["version"] = claimed[root].name
        else:
            root = Path(init.get("save_dir") or init.get("dir") or ".") / "lightning_logs"
            if claimed:  # beside a CSV or TensorBoard logger (a study cell with --wandb): the same run folder
                root = next(iter(claimed))
            elif root not in claimed:
                claimed[root] = claim_run_dir(root)
            # absolute: W&B's service process outlives a run and resolves a relative folder against its own working
            # directory (a later run from another folder wrote its run-*.wandb file into the first run's folder)
            init["save_dir"] = str(claimed[root].resolve())
            if "dir" in init:
                init["dir"] = None
    return list(claimed.values())


def release_if_unused(folder: Path) -> None:
    """Remove a claimed run folder that holds nothing but what a run writes before training (a failed start)."""
    if not folder.is_dir():
        return
    files = [p for p in folder.rglob("*") if p.is_file()]
    if any(p.name not in SCAFFOLD for p in files):
        return
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
    os.rmdir(folder)
    for parent in _MADE_FOR.pop(folder, []):
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def read_metrics_csv(metrics_csv: Path) -> list[dict[str, float]]:
    """The rows of a CSVLogger ``metrics.csv`` with their filled cells only (``epoch``/``step`` as ints)."""
    if not metrics_csv.is_file():
        return []
    with metrics_csv.open() as f:
        return [
            {k: int(float(v)) if k in ("epoch", "step") else float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)
        ]
