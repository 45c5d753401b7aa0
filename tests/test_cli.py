"""The lit-mc command: a fixture run end to end, and one-line errors with a non-zero exit for bad input."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from conftest import CLASSES, QUIET, REPO, baseline_fit, error_line
from lit_mc.cli import main, run_lightning_cli
from lit_mc.runner import condense_parser_error

BASELINE = str(REPO / "configs" / "cifar10" / "baseline.yaml")


def test_fit_then_test_writes_a_run(cifar_root: Path, in_tmp: Path) -> None:
    adam = ["--model.init_args.optimizer=adam", "--model.init_args.lr=0.001"]  # 2 epochs: not one class for all
    cli = run_lightning_cli(baseline_fit(cifar_root, "--trainer.max_epochs=2", *adam))
    run = Path(cli.trainer.log_dir)
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    assert (run / "confusion_matrix.png").is_file()  # test_after_fit ran on the best checkpoint
    assert any((run / "checkpoints").glob("best-*.ckpt")) and (run / "checkpoints" / "last.ckpt").is_file()
    report = json.loads((run / "test_metrics.json").read_text())

    # the test metrics against scikit-learn on the same checkpoint's saved predictions and the fixture's labels
    best = cli.trainer.checkpoint_callback.best_model_path
    predict = run_lightning_cli(
        ["predict", "--config", BASELINE, *adam, f"--ckpt_path={best}", f"--data.data_dir={cifar_root}", *QUIET]
    )
    with (Path(predict.trainer.log_dir) / "predictions.csv").open() as f:
        predicted = [int(row["pred"]) for row in csv.DictReader(f)]
    with (cifar_root / "cifar-10-batches-py" / "test_batch").open("rb") as f:
        labels = pickle.load(f)["labels"]
    assert len(predicted) == len(labels) == 40 and len(set(predicted)) > 1  # not one class for every image
    metrics, classes = report["metrics"], list(range(10))
    assert metrics["test_acc"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-6)
    macro_f1 = f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)
    assert metrics["test_f1"] == pytest.approx(macro_f1, abs=1e-6)
    per_class = recall_score(labels, predicted, labels=classes, average=None, zero_division=0)  # accuracy per class
    assert [metrics[f"test_acc_{name}"] for name in CLASSES] == pytest.approx(per_class.tolist(), abs=1e-6)
    assert report["class_names"] == CLASSES
    assert report["confusion"] == confusion_matrix(labels, predicted, labels=classes).tolist()  # rows: true class


def test_saved_config_reproduces_the_run(cifar_root: Path, in_tmp: Path) -> None:
    args = [
        f"--data.data_dir={cifar_root}",
        "--data.val_size=50",
        "--trainer.max_epochs=1",
        "--test_after_fit=false",
        *QUIET,
    ]
    first = run_lightning_cli(["fit", "--config", BASELINE, *args])
    saved = Path(first.trainer.log_dir) / "config.yaml"
    again = run_lightning_cli(["fit", "--config", str(saved)])
    assert again.trainer.log_dir != first.trainer.log_dir  # a new run: the saved one keeps its files
    assert (Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt").is_file()
    a, b = first.trainer.callback_metrics, again.trainer.callback_metrics
    assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), abs=1e-6)


def test_missing_data_dir(capsys: pytest.CaptureFixture, in_tmp: Path) -> None:
    line = error_line(capsys, ["fit", "--config", BASELINE, "--data.data_dir=/no/such/dir", *QUIET])
    assert "CIFAR-10 not found" in line and "LIT_MC_DATA" in line
    assert not (in_tmp / "lightning_logs").exists()  # nothing half-written


def test_truncated_pickle(capsys: pytest.CaptureFixture, cifar_copy: Path, in_tmp: Path) -> None:
    path = cifar_copy / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    line = error_line(capsys, ["fit", "--config", BASELINE, f"--data.data_dir={cifar_copy}", *QUIET])
    assert "truncated" in line and "test_batch" in line
    assert not (in_tmp / "lightning_logs").exists()


def test_unknown_config_key(capsys: pytest.CaptureFixture, in_tmp: Path) -> None:
    line = error_line(capsys, ["fit", "--config", BASELINE, "--model.init_args.model.init_args.chanels=[8]"])
    assert "chanels" in line and "not accepted" in line


def test_unknown_key_in_a_config_file(capsys: pytest.CaptureFixture, in_tmp: Path) -> None:
    bad = in_tmp / "bad.yaml"
    bad.write_text(Path(BASELINE).read_text().replace("max_epochs: 20", "max_epoch: 20"))
    line = error_line(capsys, ["fit", "--config", str(bad)])
    assert "max_epoch" in line


def test_wrong_type(capsys: pytest.CaptureFixture, in_tmp: Path) -> None:
    line = error_line(capsys, ["fit", "--config", BASELINE, "--trainer.max_epochs=many"])
    assert "max_epochs" in line and "int" in line


def test_missing_and_corrupt_checkpoint(capsys: pytest.CaptureFixture, in_tmp: Path) -> None:
    assert "does not exist" in error_line(capsys, ["test", "--config", BASELINE, "--ckpt_path=/nope.ckpt"])
    junk = in_tmp / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    assert "cannot read checkpoint" in error_line(capsys, ["test", "--config", BASELINE, f"--ckpt_path={junk}"])


class _Payload:
    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, ("touch pwned",))


def test_malicious_checkpoint_is_refused(capsys: pytest.CaptureFixture, in_tmp: Path) -> None:
    evil = in_tmp / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload()}}, evil)
    line = error_line(capsys, ["test", "--config", BASELINE, f"--ckpt_path={evil}"])
    assert "refusing checkpoint" in line
    assert not (in_tmp / "pwned").exists()


def test_condense_parser_error_keeps_key_and_cause() -> None:
    message = """Parser key "model":
  Does not validate against any of the Union subtypes
  Errors:
    - Problem with given class_path 'x.Y':
        Option 'foo' is not accepted
    - Expected a <class 'NoneType'>
  Given value: NestedArg(key='foo', val=1)"""
    line = condense_parser_error(message)
    assert line.startswith('Parser key "model"') and "Option 'foo' is not accepted" in line and "\n" not in line


def test_console_script_exit_code_and_single_line(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: stderr ends in exactly one error line, exit status 2."""
    env = {**os.environ, "LIT_MC_DATA": str(tmp_path / "empty")}
    proc = subprocess.run(
        [sys.executable, "-m", "lit_mc.cli", "fit", "--config", BASELINE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [errors[0]] and errors[0].startswith("lit-mc: error: CIFAR-10 not found")
    assert "Traceback" not in proc.stderr


def test_data_command_reports_a_ready_folder(cifar_root: Path, capsys: pytest.CaptureFixture) -> None:
    main(["data", "cifar10", "--dest", str(cifar_root)])
    assert "300 training and 40 test images" in capsys.readouterr().out


@pytest.mark.parametrize(
    "logger,artefact",
    [
        ("lightning.pytorch.loggers.TensorBoardLogger", "events.out.tfevents"),
        ("lightning.pytorch.loggers.WandbLogger", ".wandb"),
    ],
)
def test_tensorboard_and_offline_wandb_loggers(
    logger: str, artefact: str, cifar_root: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """W&B runs offline here (no network, no login): WANDB_MODE is set to offline unless the user configured it."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(in_tmp))  # no ~/.netrc login
    run_lightning_cli(
        [
            "fit",
            "--config",
            BASELINE,
            f"--data.data_dir={cifar_root}",
            "--data.val_size=50",
            "--trainer.max_epochs=1",
            f"--trainer.logger={logger}",
            "--trainer.logger.init_args.save_dir=.",
            *QUIET,
        ]
    )
    assert os.environ["WANDB_MODE"] == "offline"
    assert any(artefact in p.name for p in in_tmp.rglob("*")), sorted(p.name for p in in_tmp.rglob("*"))[:50]


def test_data_command_offline_says_where_to_put_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    def no_network(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", no_network)
    line = error_line(capsys, ["data", "cifar10", "--dest", str(tmp_path / "data")])
    assert "cannot download CIFAR-10" in line and "cifar-10-batches-py/" in line
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()
