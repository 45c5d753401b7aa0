"""EpochSeed: reseed the global RNG at every epoch start, so a resumed run draws what the uninterrupted one drew.

Lightning restores model, optimiser and loop state from a checkpoint, but not the global torch RNG; anything that
draws from it (dropout, random init of lazily built layers) would then differ after a resume. Seeding each epoch
from (seed, epoch) makes every epoch's randomness a function of where it is, not of what happened before.
"""

from __future__ import annotations

import lightning as L
from lightning.fabric.utilities.seed import seed_everything


class EpochSeed(L.Callback):
    """Seed torch, numpy and random with ``seed * 1000 + epoch`` when each training epoch starts."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed_everything(self.seed * 1000 + trainer.current_epoch, workers=False, verbose=False)
