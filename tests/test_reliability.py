"""A run killed at any point resumes to the same result; a NaN loss stops cleanly; no secret is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import QUIET, REPO

CONFIG = str(REPO / "configs" / "cifar10" / "baseline.yaml")
EPOCHS = 4


def _fit(cwd: Path, data: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``lit-mc fit`` on the fixture as a user runs it: its own process, so SIGKILL hits only it."""
    args = [
        sys.executable,
        "-m",
        "lit_mc.cli",
        "fit",
        "--config",
        CONFIG,
        f"--data.data_dir={data}",
        "--data.val_size=50",
        "--data.batch_size=32",
        f"--trainer.max_epochs={EPOCHS}",
        "--test_after_fit=false",
        *QUIET,
        "--trainer.deterministic=true",
        "--model.init_args.model.init_args.dropout=0.3",  # dropout: RNG must resume
        "--data.augment.hflip=true",
        "--data.augment.crop_padding=2",
        *extra,
    ]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]), **(env or {})}
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


def _final_state(run: Path) -> tuple[dict, list[str]]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    rows = (run / "metrics.csv").read_text().splitlines()
    return ckpt["state_dict"], rows


@pytest.fixture(scope="module")
def uninterrupted(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("straight")
    proc = _fit(cwd, cifar_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd / "lightning_logs" / "version_0"


@pytest.mark.parametrize("point,epoch", [("mid_epoch", 2), ("validation", 1), ("checkpoint_write", 2)])
def test_killed_run_resumes_to_the_same_result(
    point: str, epoch: int, uninterrupted: Path, cifar_root: Path, tmp_path: Path
) -> None:
    killer = json.dumps([{"class_path": "killers.KillAt", "init_args": {"point": point, "epoch": epoch}}])
    killed = _fit(tmp_path, cifar_root, f"--trainer.callbacks+={killer}")
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "lightning_logs" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    # whatever the kill interrupted, last.ckpt is a complete checkpoint (atomic write) from an earlier epoch
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] < epoch + (point == "checkpoint_write")
    resumed = _fit(tmp_path, cifar_root, "--ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout and not (tmp_path / "lightning_logs" / "version_1").exists()
    ours, our_rows = _final_state(run)
    theirs, their_rows = _final_state(uninterrupted)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert _epoch_metrics(our_rows) == _epoch_metrics(their_rows)  # no logged epoch lost or doubled


# a second checkpoint callback whose monitored value improves every epoch: a ``last.ckpt`` written before the
# epoch's checkpoints records a stale "best", and the resumed run then keeps two files where one belongs
NEWEST = json.dumps([{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"monitor": "step", "mode": "max", "filename": "newest-{step}"}}])  # fmt: skip
RECIPES = {
    "momentum_sgd": [CONFIG, "--model.init_args.momentum=0.9", "--model.init_args.nesterov=true"],
    "adam_cosine_batchnorm": [CONFIG, "--model.init_args.optimizer=adam", "--model.init_args.lr=0.002",
                              "--model.init_args.scheduler=cosine",
                              "--model.init_args.model.init_args.batch_norm=true"],
    "fast_lookahead_whitening": [str(REPO / "configs" / "cifar10" / "fast.yaml"), "--data.batch_size=32",
                                 "--model.init_args.model.init_args.widths=[8,16,16]"],
}  # fmt: skip


def _recipe_fit(cwd: Path, data: Path, recipe: list[str], *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "lit_mc.cli", "fit", "--config", *recipe, f"--data.data_dir={data}",
            "--data.val_size=50", "--trainer.max_epochs=3", "--trainer.deterministic=true", "--test_after_fit=true",
            f"--trainer.callbacks+={NEWEST}", *QUIET, *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _best_paths(ckpt: Path) -> list[str]:
    states = torch.load(ckpt, map_location="cpu", weights_only=True)["callbacks"]
    return sorted(Path(s["best_model_path"]).name for k, s in states.items() if k.startswith("ModelCheckpoint"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_resumed_run_ends_bit_identical_and_tests_the_same_checkpoint(
    recipe: str, cifar_root: Path, tmp_path: Path
) -> None:
    """Killed in epoch 2's validation, resumed from epoch 1's last.ckpt: same weights, same checkpoint files, the
    same "best" on record, and the same test metrics (``test_after_fit`` tests the best checkpoint)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    done = _recipe_fit(straight, cifar_root, RECIPES[recipe])
    assert done.returncode == 0, done.stderr[-2000:]
    killer = json.dumps([{"class_path": "killers.KillAt", "init_args": {"point": "validation", "epoch": 2}}])
    assert _recipe_fit(killed, cifar_root, RECIPES[recipe], f"--trainer.callbacks+={killer}").returncode == -9
    resumed = _recipe_fit(killed, cifar_root, RECIPES[recipe], "--ckpt_path=last")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-2000:]
    ours, theirs = (d / "lightning_logs" / "version_0" for d in (killed, straight))
    assert sorted(p.name for p in (ours / "checkpoints").iterdir()) == sorted(
        p.name for p in (theirs / "checkpoints").iterdir()
    )
    assert _best_paths(ours / "checkpoints" / "last.ckpt") == _best_paths(theirs / "checkpoints" / "last.ckpt")
    a, b = _final_state(ours)[0], _final_state(theirs)[0]
    assert all(torch.equal(a[k], b[k]) for k in b) and a.keys() == b.keys()
    tested = [json.loads((d / "test_metrics.json").read_text())["metrics"] for d in (ours, theirs)]
    assert tested[0] == tested[1]


def _epoch_metrics(rows: list[str]) -> list[tuple[str, ...]]:
    """Logged (epoch, metrics) rows, sorted, with the column order taken from each file's header."""
    import csv

    parsed = list(csv.DictReader(rows))
    keys = sorted(k for k in parsed[0] if k != "step")
    return sorted(tuple(row.get(k) or "" for k in keys) for row in parsed)


def test_resume_without_an_earlier_run_is_a_clear_error(cifar_root: Path, tmp_path: Path) -> None:
    proc = _fit(tmp_path, cifar_root, "--ckpt_path=last")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("lit-mc: error: no run of this model and data")


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(cifar_root: Path, tmp_path: Path) -> None:
    bomb = json.dumps([{"class_path": "killers.ExplodeAt", "init_args": {"epoch": 2}}])
    proc = _fit(tmp_path, cifar_root, f"--trainer.callbacks+={bomb}")
    assert proc.returncode == 2
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("lit-mc: error: training loss became") and "Fix: lower the learning rate" in last_line
    ckpt = torch.load(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_no_secret_lands_in_run_files(cifar_root: Path, tmp_path: Path) -> None:
    secret = "wandb-secret-0123456789abcdef"
    proc = _fit(tmp_path, cifar_root, "--trainer.max_epochs=1", env={"WANDB_API_KEY": secret, "HF_TOKEN": secret})
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = [p for p in (tmp_path / "lightning_logs").rglob("*") if p.is_file()]
    assert written and not [p for p in written if secret.encode() in p.read_bytes()]
    assert secret not in proc.stdout + proc.stderr


def test_resume_finds_a_run_saved_before_an_option_existed() -> None:
    """``--ckpt_path last`` matches a run whose config lacks a newer option, if the option keeps its default."""
    from lit_mc.settings import same_settings

    saved = {"class_path": "lit_mc.captioning.ShowAttendTell", "init_args": {"lr": 0.0004, "encoder": {"size": 224}}}
    now = {"class_path": "lit_mc.captioning.ShowAttendTell",
           "init_args": {"lr": 0.0004, "encoder": {"size": 224}, "encoder_blocks": 0}}  # fmt: skip
    assert same_settings(saved, now)
    assert not same_settings(saved, {**now, "init_args": {**now["init_args"], "encoder_blocks": 2}})
    assert not same_settings(saved, {**now, "init_args": {**now["init_args"], "lr": 0.001}})
    assert not same_settings(saved, {**now, "class_path": "lit_mc.captioning.ShowAndTell"})
    assert not same_settings({**saved, "init_args": {**saved["init_args"], "gone": 1}}, now)
