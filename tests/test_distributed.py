"""Data parallelism: each process of a Lightning DDP run takes its own share of every epoch, and the run equals a
single-process run with the combined batch (2 CPU processes, gloo)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import QUIET, REPO
from lit_mc.batches import InMemoryBatches


def _shares(n: int, batch: int, replicas: int, equal: bool, shuffle: bool) -> list[list[int]]:
    items = torch.arange(n)
    out = []
    for rank in range(replicas):
        loader = InMemoryBatches((items,), batch, shuffle, False, 7, replicas, rank, equal_shares=equal)
        loader.sampler.set_epoch(3)
        batches = [b[0].tolist() for b in loader]
        assert len(batches) == len(loader)
        out.append([i for b in batches for i in b])
    return out


def test_training_shares_are_disjoint_equal_and_follow_the_epoch_order() -> None:
    a, b = _shares(23, 4, 2, equal=True, shuffle=True)
    order = InMemoryBatches((torch.arange(23),), 4, True, False, 7)
    order.sampler.set_epoch(3)
    epoch = order.sampler.indices().tolist()
    assert len(a) == len(b) == 11 and not set(a) & set(b)
    assert a == epoch[0:22:2] and b == epoch[1:22:2]  # order[rank::2] of the epoch cut to a multiple of 2
    assert len(InMemoryBatches((torch.arange(23),), 4, True, False, 7, 2, 1, equal_shares=True)) == 3  # same steps


def test_evaluation_shares_hold_every_item_once() -> None:
    a, b = _shares(23, 4, 2, equal=False, shuffle=False)
    assert sorted(a + b) == list(range(23)) and (len(a), len(b)) == (12, 11)
    with pytest.raises(ValueError, match="rank 2 of 2"):
        InMemoryBatches((torch.arange(4),), 2, num_replicas=2, rank=2)


def _fit(cifar_root: Path, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "lit_mc.cli", "fit", "--config", str(REPO / "configs" / "cifar10" / "baseline.yaml"),
            f"--data.data_dir={cifar_root}", "--data.val_size=50", "--trainer.max_epochs=2", "--test_after_fit=false",
            "--trainer.accelerator=cpu", *QUIET, *extra]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]),
        "OMP_NUM_THREADS": "1",
    }
    folder.mkdir()
    return subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def _last_row(metrics: Path, key: str) -> float:
    with metrics.open() as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)][-1]


def test_ddp_on_two_processes_equals_one_process_with_the_doubled_batch(cifar_root: Path, tmp_path: Path) -> None:
    """Two processes of batch 10 see disjoint halves of each batch of 20 of the same epoch order, and DDP averages
    their gradients: the weights after two epochs equal those of one process at batch 20 up to float rounding
    (no augmentation, no dropout, so nothing else differs; measured: at most 1.3e-5 apart after 24 steps), and
    the validation metrics, computed over all 50 images once, are the same."""
    ddp = _fit(cifar_root, tmp_path / "ddp", "--data.batch_size=10", "--trainer.strategy=ddp", "--trainer.devices=2")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _fit(cifar_root, tmp_path / "single", "--data.batch_size=20", "--trainer.devices=1")
    assert single.returncode == 0, single.stderr[-3000:]
    runs = {name: tmp_path / name / "lightning_logs" for name in ("ddp", "single")}
    assert sorted(p.name for p in runs["ddp"].iterdir()) == ["version_0"]  # one run, one folder, both processes
    weights = {n: torch.load(r / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for n, r in runs.items()}  # fmt: skip
    for key, value in weights["single"].items():  # equal up to float rounding (sums in another order): ~1e-5
        torch.testing.assert_close(weights["ddp"][key], value, rtol=1e-3, atol=5e-5, msg=key)
    metrics = {n: r / "version_0" / "metrics.csv" for n, r in runs.items()}
    assert _last_row(metrics["ddp"], "val_acc") == _last_row(metrics["single"], "val_acc")
    assert _last_row(metrics["ddp"], "val_loss") == pytest.approx(_last_row(metrics["single"], "val_loss"), rel=1e-4)


def test_captioner_validation_over_two_processes_scores_every_image_once(tmp_path: Path) -> None:
    """A toy captioner's checkpoint validated by 2 DDP processes gives the single-process validation CIDEr and
    BLEU-4: each process captions its share, the captions are gathered, and the 8 images are scored once."""
    from lit_mc.captioning.toy import write_toy_set

    toy = write_toy_set(tmp_path / "toy", train=24, val=8, test=4, size=32)
    data = [f"--data.data_dir={toy}", "--data.encoder.backbone=patches", "--data.encoder.weights=null",
            "--data.encoder.image_size=32", "--data.encoder.patch_size=8", "--data.min_count=1",
            "--data.eval_batch_size=3", "--trainer.accelerator=cpu", *QUIET]  # fmt: skip
    path = os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    config = str(REPO / "configs" / "flickr8k" / "show_and_tell.yaml")
    fit = [sys.executable, "-m", "lit_mc.cli", "fit", "--config", config, *data, "--trainer.max_epochs=2",
           "--test_after_fit=false", "--model.init_args.embed_dim=16", "--model.init_args.hidden_dim=32"]  # fmt: skip
    done = subprocess.run(fit, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    scores = {}
    for devices in (1, 2):
        extra = ["--trainer.strategy=ddp"] if devices == 2 else []
        validate = [sys.executable, "-m", "lit_mc.cli", "validate", "--ckpt_path", str(ckpt), *data,
                    f"--trainer.devices={devices}", *extra]  # fmt: skip
        done = subprocess.run(validate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        run = sorted((tmp_path / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))[-1]
        scores[devices] = {k: _last_row(run / "metrics.csv", k) for k in ("val_cider", "val_bleu4", "val_loss")}
    assert scores[2]["val_cider"] == pytest.approx(scores[1]["val_cider"], abs=1e-9)
    assert scores[2]["val_bleu4"] == pytest.approx(scores[1]["val_bleu4"], abs=1e-9)
    assert scores[2]["val_loss"] == pytest.approx(scores[1]["val_loss"], rel=1e-5)
