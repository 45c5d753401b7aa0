"""The move to task packages keeps what users and results depend on: every committed cell keeps its key, configs
and checkpoints that name the old class paths (``lit_mc.models.ConvNet``, ...) still run, load and compare equal."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from conftest import QUIET, REPO
from lit_mc.cli import main
from lit_mc.moved import FIRST, MOVED, current_names, first_names
from lit_mc.studies.store import config_key


def _committed_cells() -> list[Path]:
    return sorted((REPO / "results").rglob("cells/*.json"))


def test_every_committed_cell_resolves_to_its_stored_key() -> None:
    cells = _committed_cells()
    assert len(cells) > 150
    wrong = [p.name for p in cells if config_key(json.loads(p.read_text())["resolved_config"]) != p.stem]
    assert wrong == []


def test_old_and_new_class_paths_hash_and_compare_the_same() -> None:
    resolved = json.loads(_committed_cells()[0].read_text())["resolved_config"]
    assert resolved["model"]["class_path"] == "lit_mc.classifier.ImageClassifier"  # stored under the first names
    renamed = current_names(resolved)
    assert renamed["model"]["class_path"] == "lit_mc.classification.ImageClassifier"
    assert renamed["model"]["init_args"]["model"]["class_path"] == "lit_mc.classification.ConvNet"
    assert config_key(renamed) == config_key(resolved) and first_names(renamed) == resolved
    assert set(FIRST) == set(MOVED.values())


def test_the_old_module_paths_still_import() -> None:
    import lit_mc.classifier  # type: ignore[import-not-found]
    import lit_mc.data  # type: ignore[import-not-found]
    import lit_mc.models  # type: ignore[import-not-found]

    import lit_mc.callbacks
    import lit_mc.classification

    assert lit_mc.models.ConvNet is lit_mc.classification.ConvNet
    assert lit_mc.classifier.ImageClassifier is lit_mc.classification.ImageClassifier
    assert lit_mc.data.CIFAR10DataModule is lit_mc.classification.CIFAR10DataModule
    assert lit_mc.callbacks.PredictionWriter is lit_mc.classification.PredictionWriter


def _old_names(text: str) -> str:
    for old, new in MOVED.items():
        text = text.replace(new, old)
    return text


def test_a_config_and_a_checkpoint_from_before_the_move_still_run(cifar_root: Path, in_tmp: Path) -> None:
    """An old config trains; its checkpoint, with the old class paths in its hyper-parameters (as every checkpoint
    written before the move has), tests without a config and resumes under the new config without a refusal."""
    old_config = in_tmp / "old.yaml"
    old_config.write_text(_old_names((REPO / "configs" / "cifar10" / "baseline.yaml").read_text()))
    assert "lit_mc.models.ConvNet" in old_config.read_text()
    data = [f"--data.data_dir={cifar_root}", "--data.val_size=50", *QUIET]
    main(["fit", "--config", str(old_config), *data, "--trainer.max_epochs=1"])
    run = in_tmp / "lightning_logs" / "version_0"
    assert (run / "test_metrics.json").is_file() and (run / "confusion_matrix.png").is_file()  # ReportFiles wrote them
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["class_path"] in (
        "lit_mc.classifier.ImageClassifier",
        "lit_mc.classification.ImageClassifier",
    )

    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    for section in ("hyper_parameters", "datamodule_hyper_parameters"):
        checkpoint[section]["_class_path"] = _old_names(checkpoint[section]["_class_path"])
        nested = checkpoint[section].get("model")
        if isinstance(nested, dict) and "class_path" in nested:
            nested["class_path"] = _old_names(nested["class_path"])
    assert checkpoint["hyper_parameters"]["_class_path"] == "lit_mc.classifier.ImageClassifier"
    old_ckpt = in_tmp / "old.ckpt"
    torch.save(checkpoint, old_ckpt)

    main(["test", "--ckpt_path", str(old_ckpt), f"--data.data_dir={cifar_root}", *QUIET])
    tested = in_tmp / "lightning_logs" / "version_1" / "test_metrics.json"
    metrics = json.loads(tested.read_text())["metrics"]
    assert metrics["test_acc"] >= 0 and 0 <= metrics["test_ece"] <= 1
    new_config = str(REPO / "configs" / "cifar10" / "baseline.yaml")
    main(["fit", "--config", new_config, *data, "--trainer.max_epochs=2", "--ckpt_path", str(old_ckpt)])
    assert (in_tmp / "lightning_logs" / "version_2" / "checkpoints" / "last.ckpt").is_file()
