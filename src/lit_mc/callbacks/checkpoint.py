"""LastCheckpoint: ``last.ckpt`` after every epoch, the state a killed run resumes from.

Lightning's ``save_last=True`` refreshes ``last.ckpt`` only when a top-k checkpoint is saved, so with a monitored
metric that stopped improving ``last.ckpt`` falls epochs behind. This callback writes it after every epoch, at
the end of the training epoch: that hook runs after the epoch's validation and, since Lightning orders checkpoint
callbacks last (this one after the configured ones), after every other checkpoint callback has saved. So the
state ``last.ckpt`` records for them (which file is the best, its score) is that of the same epoch, and a resumed
run knows its best checkpoint. Writing it at validation end instead would run before a ``ModelCheckpoint`` that
saves at train epoch end (Lightning's default), and record the previous epoch's best.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Always-on ``checkpoints/last.ckpt`` of the newest epoch, written after every other checkpoint of it."""

    def __init__(self) -> None:
        super().__init__(filename="last", save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=True)

    def _should_save_on_train_epoch_end(self, trainer: L.Trainer) -> bool:
        return True
