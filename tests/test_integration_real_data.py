"""On the real CIFAR-10 (when present beside the project): the data is what it should be, and a model learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import QUIET, REPO, real_cifar_dir
from lit_mc.classification.datamodule import load_cifar10
from lit_mc.cli import run_lightning_cli

REAL = real_cifar_dir()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(REAL is None, reason="real CIFAR-10 not in data/ (make data) nor $LIT_MC_DATA"),
]


def test_real_cifar10_is_complete_and_balanced() -> None:
    arrays = load_cifar10(REAL)
    assert arrays.train_images.shape == (50_000, 3, 32, 32) and arrays.test_images.shape == (10_000, 3, 32, 32)
    assert torch.bincount(arrays.train_labels).tolist() == [5000] * 10
    assert torch.bincount(arrays.test_labels).tolist() == [1000] * 10
    mean = arrays.train_images.double().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64), atol=1e-3)


def test_one_epoch_on_5000_images_beats_30_percent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "cifar10" / "batchnorm.yaml"),
            f"--data.data_dir={REAL}",
            "--data.subset=500",
            "--data.val_size=0.1",
            "--trainer.max_epochs=1",
            "--test_after_fit=false",
            *QUIET,
        ]
    )
    assert len(cli.datamodule.train_idx) == 4500 and len(cli.datamodule.val_idx) == 500
    assert float(cli.trainer.callback_metrics["val_acc"]) > 0.30
