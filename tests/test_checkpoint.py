"""Checkpoints are self-contained (normalisation, class names, model config) and load without running code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from conftest import CLASSES, QUIET, REPO, baseline_fit, error_line
from lit_mc.classification import ConvNet
from lit_mc.classification.datamodule import CIFAR10DataModule
from lit_mc.classification.module import ImageClassifier
from lit_mc.cli import run_lightning_cli
from lit_mc.errors import LitMcError

BASELINE = str(REPO / "configs" / "cifar10" / "baseline.yaml")


@pytest.fixture(scope="module")
def trained(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageClassifier, Path]:
    """One short CLI run: the trained module as it is in memory after fit, and its last checkpoint."""
    cwd = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("run"))
    try:
        cli = run_lightning_cli(baseline_fit(cifar_root, "--trainer.max_epochs=1", "--test_after_fit=false"))
        return cli.model, Path(cli.trainer.log_dir).resolve() / "checkpoints" / "last.ckpt"
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def trained_run(trained: tuple[ImageClassifier, Path]) -> Path:
    """The last checkpoint of the run, which the tests below inspect."""
    return trained[1]


def fixture_test_set(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images of a fixture folder as floats in [0, 1] ``(N, 3, 32, 32)``, and their labels, read from
    the pickle directly (not through the DataModule)."""
    with (data_dir / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        batch = pickle.load(f)
    images = torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).copy())
    return images.float() / 255.0, torch.tensor(batch["labels"])


def expected_accuracy(module: ImageClassifier, data_dir: Path) -> float:
    """Test accuracy of ``module`` on a fixture folder, counted by hand from its logits."""
    images, labels = fixture_test_set(data_dir)
    with torch.no_grad():
        return (module.eval()(images).argmax(dim=1) == labels).float().mean().item()


def test_checkpoint_loads_with_weights_only(trained_run: Path) -> None:
    raw = torch.load(trained_run, map_location="cpu", weights_only=True)
    assert raw["lit_mc"]["class_names"][3] == "cat"
    assert raw["hyper_parameters"]["model"]["class_path"] == "lit_mc.classification.ConvNet"
    assert raw["state_dict"]["norm_std"].flatten().tolist() != [1.0, 1.0, 1.0]


def test_model_rebuilds_from_the_checkpoint_alone(trained: tuple[ImageClassifier, Path], cifar_root: Path) -> None:
    """The checkpoint alone gives back the trained module: its weights, hyperparameters, class names, the training
    split's normalisation, and so the same logits on the same images."""
    module, ckpt = trained
    loaded = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    assert isinstance(loaded.model, ConvNet) and loaded.class_names == module.class_names == CLASSES
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert saved == dict(module.hparams) and saved["model"]["init_args"]["channels"] == [32, 64, 128]
    # the rebuilt module's own hyperparameters: the trained module's, less the network's config it was built from
    assert {k: module.hparams[k] for k in loaded.hparams} == dict(loaded.hparams) and loaded.hparams["lr"] == 0.01
    assert set(module.hparams) - set(loaded.hparams) <= {"model", "_class_path", "_instantiator"}
    ours, theirs = module.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # the normalisation buffers hold the training split's per-channel mean and std, computed here with numpy
    dm = CIFAR10DataModule(data_dir=str(cifar_root), val_size=50)
    dm.setup("fit")
    train = dm.arrays.train_images.numpy()[dm.train_idx].astype(np.float64) / 255.0
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    for buffers in (module, loaded):
        torch.testing.assert_close(buffers.norm_mean.flatten().double(), torch.from_numpy(mean), rtol=0, atol=1e-6)
        torch.testing.assert_close(buffers.norm_std.flatten().double(), torch.from_numpy(std), rtol=0, atol=1e-6)
    images, _ = fixture_test_set(cifar_root)
    with torch.no_grad():
        logits = module.eval()(images)
        torch.testing.assert_close(loaded.eval()(images), logits, rtol=1e-6, atol=1e-6)
    assert logits.std(dim=0).min() > 0  # logits that depend on the image, so equal logits mean something


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
    trained: tuple[ImageClassifier, Path], cifar_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lit-mc test --ckpt_path X --data.data_dir D`: model and data from the checkpoint, the folder from the user."""
    module, trained_run = trained
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        ["test", f"--ckpt_path={trained_run}", f"--data.data_dir={cifar_copy}", "--trainer.enable_progress_bar=false"]
    )
    assert cli.datamodule.data_dir == str(cifar_copy) and isinstance(cli.model.model, ConvNet)
    accuracy = expected_accuracy(module, cifar_copy.parent)
    assert float(cli.trainer.callback_metrics["test_acc"]) == pytest.approx(accuracy, abs=1e-6)


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


def test_test_needs_only_the_checkpoint(
    trained: tuple[ImageClassifier, Path], cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lit-mc test --ckpt_path X`: model and data (its folder, split, seed) come from the checkpoint."""
    module, trained_run = trained
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(["test", f"--ckpt_path={trained_run}", "--trainer.enable_progress_bar=false"])
    assert isinstance(cli.model.model, ConvNet) and cli.datamodule.data_dir == str(cifar_root)
    accuracy = expected_accuracy(module, cifar_root)
    assert float(cli.trainer.callback_metrics["test_acc"]) == pytest.approx(accuracy, abs=1e-6)
