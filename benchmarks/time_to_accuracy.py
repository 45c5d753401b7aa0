"""Time to accuracy on this machine: wall time for a shipped CIFAR-10 config to reach a test accuracy.

The config trains exactly as ``lit-mc fit`` would (its own validation included in the clock). After every
epoch the clock stops, the test accuracy is measured (10,000 images, not counted), and the clock goes on. The
run goes on past the target, so that the accuracy within each budget is known, and ends at the time limit or at
the config's last epoch.

    python benchmarks/time_to_accuracy.py --config configs/cifar10/baseline.yaml --target 0.65 --minutes 10

Arguments after ``--`` go to the config as ``lit-mc fit`` overrides (recorded in the JSON), e.g.
``-- --trainer.max_epochs=4``.

Prints the time to the target and the test accuracy reached within each budget (1, 3, 10, 30 min), and writes
``benchmarks/results/time_to_accuracy_<config>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import torch

from lit_mc.cli import run_lightning_cli
from lit_mc.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
BUDGETS_MIN = (1, 3, 10, 30)


class TestAccuracyClock(L.Callback):
    """Training wall time (test evaluations excluded) and the test accuracy after each epoch."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.points: list[dict[str, float]] = []
        self.elapsed = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.elapsed += time.perf_counter() - self._start
        accuracy = test_accuracy(trainer, pl_module)
        self.points.append({"epoch": trainer.current_epoch + 1, "seconds": self.elapsed, "test_acc": accuracy})
        print(f"epoch {trainer.current_epoch + 1:3d}  {self.elapsed:7.1f} s  test accuracy {accuracy:.4f}", flush=True)
        if self.elapsed >= self.limit_s:
            trainer.should_stop = True
        self._start = time.perf_counter()


@torch.no_grad()
def test_accuracy(trainer: L.Trainer, module: L.LightningModule) -> float:
    datamodule = trainer.datamodule
    was_training = module.training
    module.eval()
    correct = total = 0
    for images, labels in datamodule.test_dataloader():
        images = images.to(module.device).float().div_(255.0)
        correct += int((module(images).argmax(1) == labels.to(module.device)).sum())
        total += len(labels)
    module.train(was_training)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "cifar10" / "baseline.yaml"))
    parser.add_argument("--target", type=float, default=0.65)
    parser.add_argument("--minutes", type=float, default=10.0, help="stop after this much training time")
    parser.add_argument("--data", default=os.environ.get("LIT_MC_DATA", str(REPO / "data")))
    parser.add_argument("--out", default=None)
    parser.add_argument("overrides", nargs="*", help="lit-mc fit arguments after --, e.g. --trainer.max_epochs=4")
    opts = parser.parse_args()
    clock = TestAccuracyClock(opts.minutes * 60)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # run folders and checkpoints of this timing run are thrown away
        try:
            argv = ["--config", str(Path(cwd, opts.config)), f"--data.data_dir={Path(cwd, opts.data)}",
                    "--test_after_fit=false", "--trainer.enable_progress_bar=false",
                    "--trainer.enable_model_summary=false", *opts.overrides]  # fmt: skip
            cli = run_lightning_cli(argv, run=False)
            cli.trainer.callbacks.append(clock)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        finally:
            os.chdir(cwd)
    reached = next((p for p in clock.points if p["test_acc"] >= opts.target), None)
    at_budget = {
        f"{m} min": max((p["test_acc"] for p in clock.points if p["seconds"] <= m * 60), default=None)
        for m in BUDGETS_MIN
        # a budget longer than a run cut by the time limit is unknown; a config that finished early stays put
        if m * 60 <= clock.elapsed or clock.elapsed < opts.minutes * 60
    }
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config": opts.config,
        "overrides": opts.overrides,
        "target": opts.target,
        "seconds_to_target": reached["seconds"] if reached else None,
        "best_test_acc": max(p["test_acc"] for p in clock.points),
        "test_acc_within": at_budget,
        "epochs": clock.points,
    }
    name = Path(opts.config).stem
    out = Path(opts.out or REPO / "benchmarks" / "results" / f"time_to_accuracy_{name}.json")
    atomic_write_text(out, json.dumps(record, indent=2))
    when = f"{reached['seconds']:.0f} s" if reached else f"not reached (best {record['best_test_acc']:.4f})"
    print(f"{name}: {opts.target:.0%} test accuracy {when}; within budgets: {at_budget}; wrote {out}")


if __name__ == "__main__":
    main()
