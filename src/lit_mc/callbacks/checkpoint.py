"""LastCheckpoint: ``last.ckpt`` after every epoch, the state a killed run resumes from.

Lightning's ``save_last=True`` refreshes ``last.ckpt`` only when a top-k checkpoint is saved, so with a monitored
metric that stopped improving ``last.ckpt`` falls epochs behind. This callback writes it after every epoch:
after validation when the epoch has one (so the best-checkpoint state of the other callbacks is included),
else at the end of the training epoch. Lightning writes it atomically (temporary file, then rename).
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Always-on ``checkpoints/last.ckpt`` of the newest epoch."""

    def __init__(self) -> None:
        super().__init__(filename="last", save_top_k=1, enable_version_counter=False)

    def _should_save_on_train_epoch_end(self, trainer: L.Trainer) -> bool:
        return sum(trainer.num_val_batches) == 0  # no validation: nothing to wait for
