"""PredictionWriter: ``lit-mc predict`` writes one CSV row per image into the run folder."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from lit_mc.io import atomic_write_text


class PredictionWriter(BasePredictionWriter):
    """Collects ``predict_step`` outputs (``probs``, ``pred``) and writes ``predictions.csv`` atomically.

    Args:
        filename: file name inside the run folder (``trainer.log_dir``), or an absolute path.
    """

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        outputs = [p for p in predictions if isinstance(p, dict)]
        if not outputs:
            return
        probs = torch.cat([o["probs"] for o in outputs]).cpu()
        names = list(getattr(pl_module, "class_names", [str(i) for i in range(probs.shape[1])]))
        path = Path(self.filename)
        if not path.is_absolute():
            path = Path(trainer.log_dir or ".") / path
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["index", "pred", "pred_name", "confidence", *[f"p_{n}" for n in names]])
        for i, row in enumerate(probs):
            k = int(row.argmax())
            writer.writerow([i, k, names[k], f"{row[k]:.5f}", *[f"{p:.5f}" for p in row.tolist()]])
        atomic_write_text(path, text.getvalue())
        print(f"wrote {len(probs)} predictions to {path}")
