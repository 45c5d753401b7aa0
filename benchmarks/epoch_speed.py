"""Training-epoch throughput on the real CIFAR-10: lit-mc against the tutorial-style PyTorch loop, side by side.

The tutorial loop is what most courses write: ``torchvision.datasets.CIFAR10`` + per-sample ``ToTensor`` and
``Normalize`` + ``DataLoader`` + the same ConvNet and plain SGD in a hand-written loop. lit-mc runs the baseline
config through ``Trainer.fit``. Both see the same number of training images; the table reports images/s of the
training epoch (validation excluded) and the ratio.

    python benchmarks/epoch_speed.py [--data data] [--repeats 1] [--out benchmarks/results/epoch_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import torch
import torchvision
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from lit_mc.classification import ConvNet
from lit_mc.classification.augment import Augmentation
from lit_mc.classification.datamodule import CIFAR10DataModule, resolve_folder
from lit_mc.cli import run_lightning_cli

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "configs" / "cifar10" / "baseline.yaml"
TRAIN_IMAGES = 45_000
BATCH = 64
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class _CIFAR10NoMd5(torchvision.datasets.CIFAR10):
    """torchvision's reader with its md5 check off (the shared copy's file-name entries are placeholders)."""

    train_list = [[f"data_batch_{i}", None] for i in range(1, 6)]
    test_list = [["test_batch", None]]
    meta = {"filename": "batches.meta", "key": "label_names", "md5": None}


class EpochTimer(L.Callback):
    """Wall time of each training epoch (no validation inside it: ``limit_val_batches=0``), and the start time of
    every training step, whose differences are step periods: everything Lightning does per step included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.step_starts: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:  # noqa: ANN001
        self.step_starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def median_step_ms(step_starts: list[float]) -> float:
    """Median period between consecutive step starts: robust to the machine's slow spells, which an epoch's mean
    is not (two epochs of the same loop, minutes apart, differed by up to 10% here)."""
    return 1000 * statistics.median(b - a for a, b in zip(step_starts, step_starts[1:], strict=False))


def _baseline_cli(data: Path, channels_last: bool, *extra: str):  # noqa: ANN202 - a LightningCLI
    """The baseline config's model, data and trainer, for one training epoch without validation or files."""
    return run_lightning_cli(
        [
            "--config", str(BASELINE), f"--data.data_dir={data}", "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--test_after_fit=false",
            "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--model.init_args.channels_last={str(channels_last).lower()}", *extra,
        ],
        run=False,
    )  # fmt: skip


def lit_mc_epoch(
    data: Path, channels_last: bool, limit_batches: int | None = None, step_ms: list[float] | None = None
) -> float:
    """Images/s of one baseline training epoch through lit-mc's ``Trainer.fit`` (median step period to ``step_ms``)."""
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            limit = [f"--trainer.limit_train_batches={limit_batches}"] if limit_batches else []
            cli = _baseline_cli(data, channels_last, *limit)
            cli.trainer.callbacks.append(timer)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        finally:
            os.chdir(cwd)
    images = (limit_batches or len(cli.datamodule.train_dataloader())) * BATCH
    if step_ms is not None:
        step_ms.append(median_step_ms(timer.step_starts))
    return images / timer.seconds[0]


def hand_loop_epoch(data: Path, limit_batches: int | None = None, step_ms: list[float] | None = None) -> float:
    """Images/s of the same epoch (model, batches, optimiser) in a hand-written loop: no Trainer at all.

    It keeps what ``ImageClassifier.training_step`` keeps, the epoch's mean loss and accuracy (summed on the
    device, read once at the end), so the ratio to ``Trainer.fit`` is the framework's cost alone."""
    cli = _baseline_cli(data, channels_last=True)
    model, dm = cli.model, cli.datamodule
    dm.setup("fit")
    model.set_normalization(*dm.normalization)
    optimizer = torch.optim.SGD(model.parameters(), lr=model.hparams.lr)
    model.train()
    start, seen = time.perf_counter(), 0
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    step_starts = []
    for step, (images, labels) in enumerate(dm.train_dataloader()):
        if step == limit_batches:
            break
        step_starts.append(time.perf_counter())
        logits = model(images.float().div_(255.0))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += len(labels)
    _ = float(loss_sum) / seen, int(correct) / seen  # the epoch's metrics, as Lightning computes them
    if step_ms is not None:
        step_ms.append(median_step_ms(step_starts))
    return seen / (time.perf_counter() - start)


def tutorial_epoch(data: Path, num_workers: int, compile_model: bool = False) -> float:
    """Images/s of one epoch of the tutorial-style loop over the same number of images (compile time included)."""
    loader = _tutorial_loader(data, num_workers, augment=False)
    torch.manual_seed(0)
    model: Callable = ConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    if compile_model:
        model = torch.compile(model)
    start = time.perf_counter()
    seen = 0
    for images, labels in loader:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def _tutorial_loader(data: Path, num_workers: int, augment: bool) -> DataLoader:
    steps = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    tf = transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    dataset = _CIFAR10NoMd5(str(resolve_folder(data).parent), train=True, transform=tf)
    subset = Subset(dataset, torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:TRAIN_IMAGES])
    return DataLoader(subset, batch_size=BATCH, shuffle=True, drop_last=True, num_workers=num_workers)


def pipeline_only(data: Path, lit_mc: bool, augment: bool, num_workers: int = 0) -> float:
    """Images/s of producing one epoch of normalised training batches, no model: the input pipeline alone."""
    if not lit_mc:
        loader = _tutorial_loader(data, num_workers, augment)
        start = time.perf_counter()
        seen = sum(len(labels) for _, labels in loader)
        return seen / (time.perf_counter() - start)
    aug = Augmentation(crop_padding=4, hflip=True) if augment else None
    dm = CIFAR10DataModule(data_dir=str(data), batch_size=BATCH, augment=aug)
    dm.setup("fit")
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in dm.normalization)
    start = time.perf_counter()
    seen = 0
    for images, labels in dm.train_dataloader():  # what on_after_batch_transfer and the model's input layer do
        _ = (dm.prepare_images(images, epoch=0) - mean) / std
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def overhead_pairs(data: Path, pairs: int, steps: int = 200) -> list[dict[str, float]]:
    """Lightning's overhead as paired runs: ``steps`` steps through ``Trainer.fit``, then the same in the hand loop
    (the order alternating), each giving its median step period. The machine's speed drifts by several percent
    over minutes, more than the overhead itself; within a pair, half a minute apart, it mostly cancels."""
    results = []
    for i in range(pairs):
        fit_ms: list[float] = []
        hand_ms: list[float] = []
        for fit_first in (i % 2 == 0, i % 2 == 1):
            if fit_first:
                lit_mc_epoch(data, True, steps, fit_ms)
            else:
                hand_loop_epoch(data, steps, hand_ms)
        results.append({"fit_ms": fit_ms[0], "hand_ms": hand_ms[0], "ratio": fit_ms[0] / hand_ms[0]})
        print(f"pair {i + 1}: Trainer.fit {fit_ms[0]:.2f} ms/step, hand loop {hand_ms[0]:.2f} ms/step", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("LIT_MC_DATA", "data"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time the tutorial loop under torch.compile")
    parser.add_argument("--overhead-pairs", type=int, default=8, help="paired Trainer.fit / hand loop runs")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "epoch_speed.json"))
    args = parser.parse_args()
    data = Path(args.data).resolve()
    cases: dict[str, Callable[[], float]] = {
        "lit-mc Trainer.fit, channels-last": lambda: lit_mc_epoch(data, channels_last=True),
        "lit-mc Trainer.fit, contiguous": lambda: lit_mc_epoch(data, channels_last=False),
        "tutorial loop, DataLoader workers=0": lambda: tutorial_epoch(data, 0),
        "tutorial loop, DataLoader workers=2": lambda: tutorial_epoch(data, 2),
        "hand-written loop, lit-mc batches": lambda: hand_loop_epoch(data),
    }
    cases["input pipeline only: lit-mc"] = lambda: pipeline_only(data, lit_mc=True, augment=False)
    cases["input pipeline only: torchvision per-sample"] = lambda: pipeline_only(data, lit_mc=False, augment=False)
    cases["input pipeline, crop+flip: lit-mc batched"] = lambda: pipeline_only(data, lit_mc=True, augment=True)
    cases["input pipeline, crop+flip: torchvision"] = lambda: pipeline_only(data, lit_mc=False, augment=True)
    cases["input pipeline, crop+flip: torchvision workers=2"] = lambda: pipeline_only(data, False, True, 2)
    if args.compile:
        cases["tutorial loop, workers=0, torch.compile"] = lambda: tutorial_epoch(data, 0, compile_model=True)
    results: dict[str, list[float]] = {name: [] for name in cases}
    # warm-up, not recorded: the first epoch in a process pays for allocations and oneDNN kernel creation
    lit_mc_epoch(data, channels_last=True, limit_batches=100)
    hand_loop_epoch(data, limit_batches=100)
    for _ in range(args.repeats):  # the cases interleaved: a slow spell of the machine hits all of them
        for name, case in cases.items():
            results[name].append(case())
            print(f"{name:45s} {results[name][-1]:8.0f} images/s", flush=True)
    references = {
        "training": statistics.median(results["tutorial loop, DataLoader workers=0"]),
        "pipeline": statistics.median(results["input pipeline only: torchvision per-sample"]),
        "pipeline_aug": statistics.median(results["input pipeline, crop+flip: torchvision"]),
    }
    print(f"\n{'case':45s} {'images/s (median)':>18s} {'ratio vs torchvision/tutorial':>30s}")
    rows = []
    for name, values in results.items():
        median = statistics.median(values)
        group = "pipeline_aug" if "crop+flip" in name else "pipeline" if "pipeline" in name else "training"
        ratio = median / references[group]
        rows.append({"case": name, "images_per_s": values, "median": median, "ratio": ratio, "group": group})
        print(f"{name:45s} {median:18.0f} {ratio:29.2f}x")
    pairs = overhead_pairs(data, args.overhead_pairs)
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_images": TRAIN_IMAGES,
        "batch_size": BATCH,
        "rows": rows,
        "overhead_pairs": pairs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(out)  # atomic: a killed benchmark never leaves half a file
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
