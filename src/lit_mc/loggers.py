"""One way to send a figure to whatever logs the run: TensorBoard's ``add_figure``, W&B's ``wandb.Image``; the CSV
logger has no place for images, so for it the PNG beside ``metrics.csv`` (written by the caller) is the record."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def log_figure(trainer: Any, name: str, fig: Figure, step: int | None = None) -> None:
    """Log ``fig`` as ``name`` (e.g. ``test/confusion_matrix``) to every TensorBoard or W&B logger of ``trainer``."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    step = trainer.global_step if step is None else step
    for logger in getattr(trainer, "loggers", None) or []:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(name, fig, global_step=step, close=False)
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log({name: wandb.Image(fig)}, step=step)
