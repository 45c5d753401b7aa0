"""One way to send a figure or a table to whatever logs the run: TensorBoard (``add_figure``, a markdown text for a
table), W&B (``wandb.Image``, ``wandb.Table`` with its pictures); the CSV logger has no place for images, so for it
the files beside ``metrics.csv`` (written by the caller) are the record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


@dataclass
class ReportTable:
    """Rows to look at in a logger (W&B shows the pictures): a cell is text, a number, a matplotlib figure, an image
    tensor (C, H, W, uint8 or [0, 1]) or the path of a PNG."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def _loggers(trainer: Any) -> list[Any]:
    return list(getattr(trainer, "loggers", None) or [])


def log_figure(trainer: Any, name: str, fig: Figure, step: int | None = None) -> None:
    """Log ``fig`` as ``name`` (e.g. ``test/confusion_matrix``) to every TensorBoard or W&B logger of ``trainer``."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    step = trainer.global_step if step is None else step
    for logger in _loggers(trainer):
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(name, fig, global_step=step, close=False)
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log({name: wandb.Image(fig)}, step=step)


def _wandb_cell(value: Any) -> Any:
    import torch
    import wandb

    if isinstance(value, Figure | Path):
        return wandb.Image(value if isinstance(value, Figure) else str(value))
    if isinstance(value, torch.Tensor):
        picture = value.detach().cpu()
        picture = picture.float() / 255 if picture.dtype == torch.uint8 else picture
        return wandb.Image(picture.clamp(0, 1).permute(1, 2, 0).numpy())
    return value


def _text_cell(value: Any) -> str:
    if isinstance(value, Path):
        return value.name
    return "(image)" if not isinstance(value, str | int | float) else str(value)


def log_table(trainer: Any, name: str, table: ReportTable, step: int | None = None) -> None:
    """Log ``table`` as ``name``: a ``wandb.Table`` (pictures as images) to W&B, a markdown text to TensorBoard."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    step = trainer.global_step if step is None else step
    for logger in _loggers(trainer):
        if isinstance(logger, WandbLogger):
            import wandb

            data = [[_wandb_cell(v) for v in row] for row in table.rows]
            logger.experiment.log({name: wandb.Table(columns=table.columns, data=data)}, step=step)
        elif isinstance(logger, TensorBoardLogger):
            lines = [table.columns, ["---"] * len(table.columns), *([_text_cell(v) for v in r] for r in table.rows)]
            logger.experiment.add_text(name, "\n".join("| " + " | ".join(line) + " |" for line in lines), step)


def wants_tables(trainer: Any) -> bool:
    """Whether a logger of ``trainer`` shows tables (so that building one, pictures and all, is worth it)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    return any(isinstance(logger, TensorBoardLogger | WandbLogger) for logger in _loggers(trainer))


__all__: Sequence[str] = ("ReportTable", "log_figure", "log_table", "wants_tables")
