"""ResultsStore: one small JSON file per finished run ("cell"), keyed by a hash of what its config sets.

A cell is written once, atomically (temporary file + rename), and only after its run finished; so a study that is
killed and started again skips every finished cell, redoes the one that was running, and never reads half a file.
While a cell trains, a lock file names the process that trains it, so that two commands (or Ray workers on a
shared file system) that need the same cell train it once: the second waits for the first and reads its cell.
A lock is taken over when its holder is gone: on this host, when its process has ended; on another host (a Ray
node that died), when its holder stopped refreshing it (the holder touches it every ``HEARTBEAT_S``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lit_mc.errors import LitMcError
from lit_mc.io import atomic_write_text
from lit_mc.moved import current_names, first_names
from lit_mc.settings import run_settings

POLL_S = float(os.environ.get("LIT_MC_LOCK_POLL_S", "5"))  # how often a waiting process looks again
HEARTBEAT_S = float(os.environ.get("LIT_MC_LOCK_HEARTBEAT_S", "30"))  # how often a holder touches its lock
STALE_AFTER_BEATS = 5  # another host's lock untouched for this many heartbeats: its holder is gone


def config_key(config: dict[str, Any]) -> str:
    """A short, stable hash of what a resolved config sets (key order and options left at their defaults do not
    matter, so an option added in a later release, at its default, keeps every key)."""
    settings = first_names(run_settings(current_names(config)))  # class paths as first published: keys never move
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _holder_is_gone(lock: Path) -> bool:
    """A lock is stale when its process (on this host) has ended, when its holder on another host stopped its
    heartbeat, or when it never got its owner written."""
    try:
        host, pid = lock.read_text().split()
    except (OSError, ValueError):
        return time.time() - lock.stat().st_mtime > 60 if lock.exists() else True
    if host != socket.gethostname():  # another node's process: its heartbeat tells (clocks agree within seconds)
        return time.time() - lock.stat().st_mtime > STALE_AFTER_BEATS * HEARTBEAT_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _heartbeat(lock: Path, stop: threading.Event) -> None:
    """Touch the lock every ``HEARTBEAT_S`` while its cell trains, so other hosts can tell that its holder lives."""
    while not stop.wait(HEARTBEAT_S):
        try:
            os.utime(lock)
        except OSError:
            return


class ResultsStore:
    """``cells_dir/<key>.json`` for each finished run, plus named summaries at ``root/<name>.json``.

    ``cells_dir`` defaults to ``root/cells``; studies share one cells folder, so a setting that two studies
    contain (the baseline, say) is trained once. Locks of cells in training live in ``cells_dir/../.locks``.
    """

    def __init__(self, root: str | Path, cells_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        self.cells_dir = Path(cells_dir) if cells_dir is not None else self.root / "cells"
        self.locks_dir = self.cells_dir.parent / ".locks"

    def check_writable(self) -> None:
        """Fail before any cell trains when its results could not be stored."""
        for folder in (self.root, self.cells_dir, self.locks_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as e:
                raise LitMcError(
                    f"cannot write results in {folder} ({e.strerror or e})", "make it writable or pass --store DIR"
                ) from None

    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.cell_path(key).is_file()

    def read(self, key: str) -> dict[str, Any]:
        return json.loads(self.cell_path(key).read_text())

    def write(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_text(self.cell_path(key), json.dumps(record, indent=1, sort_keys=True))

    def cells(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.cells_dir.glob("*.json"))]

    @contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        """Hold the cell's lock: yields ``True`` when the caller is to train the cell, ``False`` when the cell
        exists (stored before, or by the process this one waited for). A lock whose process died is taken over."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        lock = self.locks_dir / f"{key}.lock"
        told = False
        while not self.has(key):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if _holder_is_gone(lock):
                    lock.unlink(missing_ok=True)
                    continue
                if not told:
                    print(f"lit-mc: cell {key} is being trained by another process ({lock}); waiting for it")
                    told = True
                time.sleep(POLL_S)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}\n")
            stop = threading.Event()
            beat = threading.Thread(target=_heartbeat, args=(lock, stop), daemon=True)
            beat.start()
            try:
                yield not self.has(key)  # the holder before us may have finished just before we took the lock
            finally:
                stop.set()
                beat.join()
                lock.unlink(missing_ok=True)
            return
        yield False

    def write_summary(self, name: str, summary: dict[str, Any]) -> Path:
        path = self.root / f"{name}.json"
        atomic_write_text(path, json.dumps(summary, indent=1, sort_keys=True))
        return path


def _replace_keys(value: Any, renamed: dict[str, str]) -> Any:
    if isinstance(value, str):
        return renamed.get(value, value)
    if isinstance(value, list):
        return [_replace_keys(v, renamed) for v in value]
    if isinstance(value, dict):
        return {k: _replace_keys(v, renamed) for k, v in value.items()}
    return value


def rekey(results: str | Path) -> dict[str, str]:
    """Re-key every cell under ``results`` (any ``cells/`` folder) by :func:`config_key` of its stored resolved
    config, and rewrite the summaries (``*.json`` beside the cells folders) that list the old keys.

    Run after a change of the key's definition; returns ``{old: new}`` for the cells that moved."""
    results = Path(results)
    renamed: dict[str, str] = {}
    for path in sorted(results.rglob("cells/*.json")):
        cell = json.loads(path.read_text())
        new = config_key(cell["resolved_config"])
        if new != path.stem:
            renamed[path.stem] = new
            atomic_write_text(path.with_name(f"{new}.json"), json.dumps({**cell, "key": new}, indent=1, sort_keys=True))
            path.unlink()
    for path in sorted(results.rglob("*.json")):
        if path.parent.name == "cells" or not renamed:
            continue
        text = path.read_text()
        if any(old in text for old in renamed):
            data = _replace_keys(json.loads(text), renamed)
            atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return renamed
