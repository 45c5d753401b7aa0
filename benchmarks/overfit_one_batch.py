"""Overfit one real CIFAR-10 batch with each shipped model config; report the step at which it is memorised.

    python benchmarks/overfit_one_batch.py [--data data] [--steps 500]

Runs ``lit-mc fit --config X --trainer.overfit_batches=1`` (same batch every step, augmentation off) and reads
the per-step training loss from the run's ``metrics.csv``; the loss and accuracy of every step are kept
(``curve``), for the notebook's overfit figure.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from lit_mc.cli import run_lightning_cli
from lit_mc.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
# stop as soon as the training loss on the batch is below 0.05 (Lightning's EarlyStopping threshold)
STOP_WHEN_MEMORISED = json.dumps(
    [{"class_path": "lightning.pytorch.callbacks.EarlyStopping",
      "init_args": {"monitor": "train_loss", "stopping_threshold": 0.05, "patience": 1_000_000,
                    "check_on_train_epoch_end": True}}]
)  # fmt: skip
CONFIGS = ("baseline", "batchnorm", "efficientnet_lite0_finetune", "efficientnet_lite0_frozen")


def fit_in_temp_dir(args: list[str]) -> tuple[Any, float, list[dict[str, str]]]:
    """``lit-mc fit`` with ``args`` in a throwaway folder: the CLI (its model and data stay usable), the wall seconds,
    and the rows of the run's ``metrics.csv``."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        start = time.perf_counter()
        cli = run_lightning_cli(["fit", *args])
        seconds = time.perf_counter() - start
        with (Path(cli.trainer.log_dir) / "metrics.csv").open() as f:
            return cli, seconds, list(csv.DictReader(f))


def overfit(config: str, data: Path, steps: int) -> dict:
    _, seconds, rows = fit_in_temp_dir(
        ["--config", str(REPO / "configs" / "cifar10" / f"{config}.yaml"), f"--data.data_dir={data}",
         "--trainer.overfit_batches=1", f"--trainer.max_epochs={steps}", "--trainer.limit_val_batches=0",
         "--test_after_fit=false", "--trainer.enable_checkpointing=false",
         f"--trainer.callbacks={STOP_WHEN_MEMORISED}", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false"]
    )  # fmt: skip
    rows = [r for r in rows if r.get("train_loss")]
    losses = [float(r["train_loss"]) for r in rows]
    accs = [float(r["train_acc"]) for r in rows]
    below = next((i + 1 for i, loss in enumerate(losses) if loss < 0.05), None)
    full = next((i + 1 for i, acc in enumerate(accs) if acc == 1.0), None)
    return {"config": config, "steps": len(losses), "first_loss": losses[0], "final_loss": losses[-1],
            "final_acc": accs[-1], "step_loss_below_0.05": below, "step_acc_100": full, "wall_s": seconds,
            "curve": {"train_loss": losses, "train_acc": accs}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("LIT_MC_DATA", "data"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "overfit_one_batch.json"))
    args = parser.parse_args()
    results = [overfit(config, Path(args.data).resolve(), args.steps) for config in CONFIGS]
    for r in results:
        print(json.dumps(r))
    atomic_write_text(Path(args.out), json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
