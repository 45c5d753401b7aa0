"""Shared by both reports: where results live, reading them, tables and figures as the notebooks embed them.

``LIT_MC_RESULTS`` / ``LIT_MC_BENCH`` point the notebooks at other folders (CI uses small fixture results).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lit_mc.errors import LitMcError


def results_root() -> Path:
    return Path(os.environ.get("LIT_MC_RESULTS", "results"))


def bench_root() -> Path:
    return Path(os.environ.get("LIT_MC_BENCH", "benchmarks/results"))


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise LitMcError(f"result file {path} does not exist", "run the command that produces it (see README)")
    return json.loads(path.read_text())


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """A figure as PNG bytes (what a notebook embeds; kept small so the committed notebook stays small)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
