"""Lookahead: every few steps, pull the weights towards a slow moving average of themselves, and copy it back.

This is airbench94's "lookahead" (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back", with
an exponential average as the slow weights). Unlike an EMA kept on the side (Lightning's ``EMAWeightAveraging``),
the model itself holds the averaged weights after every sync, so validation, test, checkpoints and any code that
calls the model see them without a swap. The decay grows as ``(step / total) ** 3`` up to ``decay``: early on the
weights move freely, late in training they are averaged over many steps. After the last step the weights are the
average.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class Lookahead(L.Callback):
    """Average the trainable weights and BatchNorm statistics every ``every`` steps.

    Args:
        decay: the weight of the old average at the end of training (airbench94: 0.95 ** 5).
        every: optimiser steps between syncs.
    """

    def __init__(self, decay: float = 0.95**5, every: int = 5) -> None:
        if not 0 <= decay < 1 or every < 1:
            raise ValueError(f"Lookahead needs 0 <= decay < 1 and every >= 1, got decay={decay}, every={every}")
        self.decay = decay
        self.every = every
        self.average: list[torch.Tensor] | None = None
        self.total_steps = 1  # the run's optimiser steps, known at train start

    @staticmethod
    def _tensors(module: L.LightningModule) -> list[torch.Tensor]:
        """What is averaged: float parameters and buffers (BatchNorm running statistics included)."""
        state = module.state_dict(keep_vars=True).values()
        return [t for t in state if t.is_floating_point()]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.total_steps = max(int(trainer.estimated_stepping_batches), 1)
        if self.average is None:
            self.average = [t.detach().clone() for t in self._tensors(pl_module)]
        else:  # restored from a checkpoint: move to the module's device
            self.average = [a.to(t.device) for a, t in zip(self.average, self._tensors(pl_module), strict=True)]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, total = trainer.global_step, self.total_steps
        if step >= total:  # the last step: the run ends with the average (and so does the last checkpoint)
            self._sync(pl_module, 1.0)
        elif step % self.every == 0:
            self._sync(pl_module, self.decay * (step / total) ** 3)

    @torch.no_grad()
    def _sync(self, pl_module: L.LightningModule, decay: float) -> None:
        assert self.average is not None
        for average, current in zip(self.average, self._tensors(pl_module), strict=True):
            average.lerp_(current.detach(), 1 - decay)
            current.copy_(average)

    def state_dict(self) -> dict[str, Any]:
        return {"average": [a.cpu() for a in self.average] if self.average is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.average = state_dict.get("average")
