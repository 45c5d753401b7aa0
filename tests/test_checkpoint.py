"""Checkpoints are self-contained (normalisation, class names, model config) and load without running code."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch

from conftest import QUIET, REPO, baseline_fit, error_line
from lit_mc.classifier import ImageClassifier
from lit_mc.cli import run_lightning_cli
from lit_mc.data.cifar10 import CIFAR10DataModule
from lit_mc.errors import LitMcError
from lit_mc.models import ConvNet

BASELINE = str(REPO / "configs" / "cifar10" / "baseline.yaml")


@pytest.fixture(scope="module")
def trained_run(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short CLI run whose last checkpoint the tests below inspect."""
    cwd = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("run"))
    try:
        cli = run_lightning_cli(baseline_fit(cifar_root, "--trainer.max_epochs=1", "--test_after_fit=false"))
        return Path(cli.trainer.log_dir).resolve() / "checkpoints" / "last.ckpt"
    finally:
        os.chdir(cwd)


def test_checkpoint_loads_with_weights_only(trained_run: Path) -> None:
    raw = torch.load(trained_run, map_location="cpu", weights_only=True)
    assert raw["lit_mc"]["class_names"][3] == "cat"
    assert raw["hyper_parameters"]["model"]["class_path"] == "lit_mc.models.ConvNet"
    assert raw["state_dict"]["norm_std"].flatten().tolist() != [1.0, 1.0, 1.0]


def test_model_rebuilds_from_the_checkpoint_alone(trained_run: Path, cifar_root: Path) -> None:
    model = ImageClassifier.load_from_checkpoint(trained_run, map_location="cpu", weights_only=True)
    assert isinstance(model.model, ConvNet) and model.class_names[0] == "airplane"
    dm = CIFAR10DataModule(data_dir=str(cifar_root), val_size=50)
    dm.setup("fit")
    mean, std = dm.normalization
    assert torch.allclose(model.norm_mean.flatten(), torch.tensor(mean)) and torch.allclose(
        model.norm_std.flatten(), torch.tensor(std)
    )
    x = torch.rand(4, 3, 32, 32)
    model.eval()
    again = ImageClassifier.load_from_checkpoint(trained_run, map_location="cpu", weights_only=True).eval()
    assert torch.equal(model(x), again(x))


def test_test_with_another_models_config_is_refused(
    trained_run: Path, cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`lit-mc test --config other.yaml --ckpt_path X` used to test X's model under other.yaml's name; now it says
    which settings differ (`lit-mc test --ckpt_path X` alone tests X's own model, see the next test)."""
    monkeypatch.chdir(tmp_path)
    other = str(REPO / "configs" / "cifar10" / "batchnorm.yaml")
    args = ["test", "--config", other, f"--ckpt_path={trained_run}", f"--data.data_dir={cifar_root}", *QUIET]
    line = error_line(capsys, args)
    assert "differs from the configured one in model.model.batch_norm" in line
    assert not (tmp_path / "lightning_logs").exists()


def test_test_from_the_checkpoint_alone_on_data_elsewhere(
    trained_run: Path, cifar_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lit-mc test --ckpt_path X --data.data_dir D`: model and data from the checkpoint, the folder from the user."""
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        ["test", f"--ckpt_path={trained_run}", f"--data.data_dir={cifar_copy}", "--trainer.enable_progress_bar=false"]
    )
    assert cli.datamodule.data_dir == str(cifar_copy) and isinstance(cli.model.model, ConvNet)
    assert "test_acc" in cli.trainer.callback_metrics


def test_checkpoint_of_another_model_is_refused(trained_run: Path, cifar_root: Path) -> None:
    other = ImageClassifier(ConvNet(channels=(8, 8), hidden=(16,)))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    dm = CIFAR10DataModule(data_dir=str(cifar_root), val_size=50)
    with pytest.raises(LitMcError, match="layers differ from the configured"):
        trainer.test(other, datamodule=dm, ckpt_path=str(trained_run))


def test_predict_writes_one_row_per_test_image(
    trained_run: Path, cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        [
            "predict",
            "--config",
            BASELINE,
            f"--ckpt_path={trained_run}",
            f"--data.data_dir={cifar_root}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    rows = (Path(cli.trainer.log_dir) / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("index,pred,pred_name,confidence,p_airplane") and len(rows) == 41
    assert not list(Path(cli.trainer.log_dir).glob("*.tmp"))


def test_test_needs_only_the_checkpoint(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lit-mc test --ckpt_path X`: model and data (its folder, split, seed) come from the checkpoint."""
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(["test", f"--ckpt_path={trained_run}", "--trainer.enable_progress_bar=false"])
    assert isinstance(cli.model.model, ConvNet) and "test_acc" in cli.trainer.callback_metrics
