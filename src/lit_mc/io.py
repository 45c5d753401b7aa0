"""Atomic file writes: a reader (or a crash) sees the old file or the whole new one, never a part of it."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from matplotlib.figure import Figure


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_all(f: io.BufferedWriter, data: bytes | memoryview) -> None:
    f.write(data)


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename. The file gets the
    permissions of any new file (the umask applies), not the temporary file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically: temporary file in the same folder, fsync, rename."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    atomic_write_bytes(path, text.encode())


def atomic_save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> None:
    """Save a matplotlib figure atomically (format from the suffix)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    atomic_write_bytes(path, buffer.getvalue())


def run_folder(trainer: object) -> Path | None:
    """The run's folder for result files, or ``None`` when the run has no logger (then nothing is written)."""
    if trainer is None or not getattr(trainer, "loggers", None) or not trainer.is_global_zero:
        return None
    return Path(trainer.log_dir) if trainer.log_dir else None
