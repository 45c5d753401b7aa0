"""ResultsStore: one small JSON file per finished run ("cell"), keyed by a hash of its resolved config.

A cell is written once, atomically (temporary file + rename), and only after its run finished; so a study that is
killed and started again skips every finished cell, redoes the one that was running, and never reads half a file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lit_mc.io import atomic_write_text


def config_key(config: dict[str, Any]) -> str:
    """A short, stable hash of a resolved config (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class ResultsStore:
    """``cells_dir/<key>.json`` for each finished run, plus named summaries at ``root/<name>.json``.

    ``cells_dir`` defaults to ``root/cells``; studies share one cells folder, so a setting that two studies
    contain (the baseline, say) is trained once.
    """

    def __init__(self, root: str | Path, cells_dir: str | Path | None = None) -> None:
        self.root = Path(root)
        self.cells_dir = Path(cells_dir) if cells_dir is not None else self.root / "cells"

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

    def write_summary(self, name: str, summary: dict[str, Any]) -> Path:
        path = self.root / f"{name}.json"
        atomic_write_text(path, json.dumps(summary, indent=1, sort_keys=True))
        return path
