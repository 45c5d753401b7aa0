"""No silent wrong result, no lost data: one folder per run, checkpoints that fit their config, stable cell keys."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from conftest import QUIET, REPO, baseline_fit, error_line
from lit_mc.checkpoints import AtomicCheckpointIO
from lit_mc.cli import run_lightning_cli
from lit_mc.runs import claim_run_dir, read_metrics_csv
from lit_mc.studies import CrossValidation, ResultsStore, Study
from lit_mc.studies.store import config_key
from lit_mc.studies.study import missing_cells

CONFIGS = REPO / "configs" / "cifar10"
BASELINE = str(CONFIGS / "baseline.yaml")


def _claim(root: str, barrier: multiprocessing.synchronize.Barrier) -> str:  # type: ignore[name-defined]
    barrier.wait()
    return claim_run_dir(root).name


def test_processes_claiming_together_get_distinct_run_folders(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(8)
    with context.Pool(8) as pool:
        names = pool.starmap(_claim, [(str(tmp_path), barrier)] * 8)
    assert sorted(names, key=lambda n: int(n.split("_")[1])) == [f"version_{i}" for i in range(8)]


def _fit_process(cwd: Path, data: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "lit_mc.cli", *baseline_fit(data, "--trainer.max_epochs=2", *extra)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_fits_started_together_write_separate_complete_folders(cifar_root: Path, tmp_path: Path) -> None:
    """The race of Lightning's version counter: both runs once picked ``version_0`` and mixed their files."""
    procs = [_fit_process(tmp_path, cifar_root, f"--model.init_args.lr={lr}") for lr in (0.01, 0.05)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    runs = sorted((tmp_path / "lightning_logs").iterdir())
    assert [r.name for r in runs] == ["version_0", "version_1"]
    lrs = set()
    for run in runs:
        config = yaml.safe_load((run / "config.yaml").read_text())
        hparams = yaml.safe_load((run / "hparams.yaml").read_text())
        lr = config["model"]["init_args"]["lr"]
        assert hparams["lr"] == lr and torch.load(run / "checkpoints" / "last.ckpt")["hyper_parameters"]["lr"] == lr
        assert [row["epoch"] for row in read_metrics_csv(run / "metrics.csv") if "val_acc" in row] == [0, 1]
        assert (run / "test_metrics.json").is_file()
        lrs.add(lr)
    assert lrs == {0.01, 0.05}


@pytest.fixture()
def trained(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(baseline_fit(cifar_root, "--trainer.max_epochs=1", "--test_after_fit=false"))
    return Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"


def test_a_checkpoint_of_another_model_config_is_refused(
    trained: Path, cifar_root: Path, capsys: pytest.CaptureFixture
) -> None:
    """Lightning replaced the configured model (best.yaml's network and lr) by the checkpoint's, silently."""
    best = ["fit", "--config", str(CONFIGS / "best.yaml"), f"--data.data_dir={cifar_root}", *QUIET]
    line = error_line(capsys, [*best, f"--ckpt_path={trained}", "--model.init_args.lr=0.05"])
    assert "differs from the configured one in" in line and "model.lr" in line and "model.optimizer" in line
    line = error_line(capsys, [*baseline_fit(cifar_root, "--model.init_args.lr=0.05"), f"--ckpt_path={trained}"])
    assert line.split(" in ", 1)[1].startswith("model.lr.")
    runs = sorted(p.name for p in trained.parents[2].iterdir())
    assert runs == ["version_0"]  # the refused commands left no run folder
    resumed = run_lightning_cli([*baseline_fit(cifar_root, "--trainer.max_epochs=2"), f"--ckpt_path={trained}"])
    assert resumed.trainer.current_epoch == 2  # the same settings still continue


def test_test_with_last_needs_a_matching_run(trained: Path, cifar_root: Path, capsys: pytest.CaptureFixture) -> None:
    """``test --ckpt_path last`` without a matching run scored a random network (test_acc 0.10, exit 0)."""
    other = ["test", "--config", str(CONFIGS / "best.yaml"), f"--data.data_dir={cifar_root}", *QUIET]
    line = error_line(capsys, [*other, "--ckpt_path=last"])
    assert "no run of this model and data with a last.ckpt" in line
    line = error_line(capsys, ["test", "--ckpt_path=last", *QUIET])
    assert "needs the run's config" in line
    cli = run_lightning_cli(["test", "--config", BASELINE, f"--data.data_dir={cifar_root}", "--data.val_size=50",
                             *QUIET, "--ckpt_path=last"])  # fmt: skip
    expected = torch.load(trained, weights_only=True)["state_dict"]
    assert all(torch.equal(v, cli.model.state_dict()[k]) for k, v in expected.items())


def test_max_epochs_zero_is_refused_before_any_folder(cifar_root: Path, in_tmp: Path, capsys) -> None:  # noqa: ANN001
    line = error_line(capsys, baseline_fit(cifar_root, "--trainer.max_epochs=0"))
    assert "max_epochs=0 trains nothing" in line and not (in_tmp / "lightning_logs").exists()


def test_a_run_without_a_logger_writes_no_config_into_the_working_folder(cifar_root: Path, in_tmp: Path) -> None:
    """No logger, no run folder: Lightning's config callback would write ``./config.yaml`` (two such runs, one
    file); a run with a logger still saves its config in its own folder."""
    from lit_mc.cli import main

    one_step = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    main(baseline_fit(cifar_root, "--trainer.logger=false", *one_step))
    assert not (in_tmp / "config.yaml").exists()
    main(baseline_fit(cifar_root, *one_step))
    assert not (in_tmp / "config.yaml").exists() and (in_tmp / "lightning_logs/version_0/config.yaml").is_file()


def test_cv_of_another_setting_keeps_the_existing_summary(cifar_root: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """``lit-mc cv`` with other overrides replaced the committed summary.json (0.7139 -> 0.1000)."""
    monkeypatch.chdir(tmp_path)
    store = ResultsStore(tmp_path / "cv")
    base = [f"--data.data_dir={cifar_root}", "--trainer.max_epochs=1", *QUIET]
    first = CrossValidation(BASELINE, 2, base, store, runs_dir=tmp_path / "runs").run()
    kept = (store.root / "summary.json").read_text()
    other = CrossValidation(BASELINE, 2, [*base, "--data.subset=40"], store, runs_dir=tmp_path / "runs").run()
    assert (store.root / "summary.json").read_text() == kept and first["file"].endswith("summary.json")
    assert other["file"] != first["file"] and json.loads(Path(other["file"]).read_text())["overrides"][-1].startswith(
        "--data.subset"
    )
    again = CrossValidation(BASELINE, 2, base, store, runs_dir=tmp_path / "runs").run()
    assert again["file"] == first["file"]  # the same setting updates its own summary


def _committed_cells() -> list[Path]:
    return sorted((REPO / "results").rglob("cells/*.json"))


def test_every_committed_cell_is_stored_under_its_key() -> None:
    cells = _committed_cells()
    assert len(cells) > 100
    for path in cells:
        cell = json.loads(path.read_text())
        assert path.stem == cell["key"] == config_key(cell["resolved_config"]), path


def test_cell_keys_survive_a_new_option_at_its_default() -> None:
    """Keys hashed the whole resolved config, so adding ``tta``/``bias_lr_scale`` (at defaults) orphaned every cell."""
    cell = json.loads(_committed_cells()[0].read_text())
    resolved = cell["resolved_config"]
    grown = json.loads(json.dumps(resolved))
    grown["model"]["init_args"]["tta"] = 0  # a default of ImageClassifier
    grown["trainer"]["detect_anomaly"] = False  # a default of Trainer
    grown["data"]["init_args"]["augment"] = {**(grown["data"]["init_args"].get("augment") or {}), "hflip": False}
    assert config_key(grown) == config_key(resolved)
    grown["model"]["init_args"]["tta"] = 1
    assert config_key(grown) != config_key(resolved)


def _finished_studies() -> list[str]:
    """Shipped studies whose committed report was made at the budget their file states (a campaign in progress
    has files ahead of their reports; those are not finished yet)."""
    names = []
    for path in sorted((REPO / "configs" / "studies").glob("*.yaml")):
        report = REPO / "results" / "studies" / path.stem / "study.json"
        if report.is_file() and json.loads(report.read_text())["budget"] == Study.load(path).budget:
            names.append(path.stem)
    return names


def test_at_least_one_shipped_study_is_finished_at_its_stated_budget() -> None:
    assert _finished_studies(), "no committed study.json matches its study file's budget"


@pytest.mark.parametrize("name", _finished_studies())
def test_a_finished_shipped_study_on_a_fresh_clone_trains_nothing(name: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(REPO)  # study files name their base config relative to the repository
    in_tmp = tmp_path
    study = Study.load(REPO / "configs" / "studies" / f"{name}.yaml")
    store = ResultsStore(REPO / "results" / "studies" / name, cells_dir=REPO / "results" / "studies" / "cells")
    assert missing_cells(study, store, runs_dir=in_tmp / "runs") == []
    assert not (in_tmp / "runs").exists() or not any((in_tmp / "runs").rglob("version_*"))


def test_wandb_runs_keep_every_file_in_their_run_folder(cifar_root: Path, in_tmp: Path) -> None:
    """W&B's run folder was the working directory: config.yaml and test files landed there (and were overwritten)."""
    pytest.importorskip("wandb")
    args = [sys.executable, "-m", "lit_mc.cli", *baseline_fit(cifar_root, "--trainer.max_epochs=1"),
            "--trainer.logger=lightning.pytorch.loggers.WandbLogger"]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])
    proc = subprocess.run(args, cwd=in_tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in in_tmp.iterdir()) == ["lightning_logs"]
    run = in_tmp / "lightning_logs" / "version_0"
    assert {"config.yaml", "test_metrics.json", "confusion_matrix.png", "wandb"} <= {p.name for p in run.iterdir()}
    assert list(run.rglob("last.ckpt"))
    bad = subprocess.run([*args, "--trainer.max_epochs=0"], cwd=in_tmp, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and sorted(p.name for p in (in_tmp / "lightning_logs").iterdir()) == ["version_0"]


def test_a_second_wandb_run_from_another_folder_keeps_its_files(cifar_root: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """W&B's service outlives a run and resolved the relative run folder against its own working directory: a later
    in-process run started elsewhere wrote its ``run-*.wandb`` into the first run's folder."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = [*baseline_fit(cifar_root, "--trainer.max_epochs=1"), "--trainer.logger=WandbLogger"]
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        try:
            run_lightning_cli(args)
        finally:
            wandb.finish()
    for folder in ("first", "second"):
        logs = list((tmp_path / folder).rglob("run-*.wandb"))
        assert len(logs) == 1 and logs[0].is_relative_to(tmp_path / folder / "lightning_logs" / "version_0"), logs


def test_checkpoints_are_written_beside_their_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning staged checkpoints in the system temp folder and copied them over: a full disk left a truncated
    file under the final name. Saving must neither touch the temp folder nor leave a partial file."""
    cli = run_lightning_cli(["--trainer.logger=false", *QUIET, "--config", BASELINE], run=False)
    io = cli.trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-temp-folder"))
    target = tmp_path / "ckpts" / "a.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, target)
    assert torch.load(target, weights_only=True)["state_dict"]["w"].sum() == 1000

    import lit_mc.io

    def disk_full(f, data) -> None:  # noqa: ANN001
        f.write(bytes(data)[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lit_mc.io, "_write_all", disk_full)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, target)
    assert torch.load(target, weights_only=True)["state_dict"]["w"].sum() == 1000  # the old file, whole
    assert [p.name for p in target.parent.iterdir()] == ["a.ckpt"]  # no temporary file left


def test_result_files_get_the_usual_permissions(tmp_path: Path) -> None:
    from lit_mc.io import atomic_write_text

    atomic_write_text(tmp_path / "r.json", "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_two_cv_commands_of_one_config_train_each_fold_once(cifar_root: Path, tmp_path: Path) -> None:
    """Two ``lit-mc cv`` of one config at once trained every fold twice; the second now waits for the first's cell."""
    args = [sys.executable, "-m", "lit_mc.cli", "cv", "--config", BASELINE, "--folds", "2",
            f"--data.data_dir={cifar_root}", "--trainer.max_epochs=1", *QUIET]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    env["LIT_MC_LOCK_POLL_S"] = "0.2"
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [proc.communicate(timeout=300) for proc in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outs]
    trained = [r for r in (tmp_path / "lightning_logs" / "cv" / "baseline").iterdir() if (r / "checkpoints").is_dir()]
    assert len(trained) == 2  # one run per fold, not two
    cells = sorted((tmp_path / "results" / "cv" / "baseline" / "cells").glob("*.json"))
    assert len(cells) == 2 and {json.loads(c.read_text())["run_dir"] for c in cells} == {
        str(r.relative_to(tmp_path)) for r in trained
    }
    assert not list((tmp_path / "results" / "cv" / "baseline" / ".locks").iterdir())


def test_a_lock_of_another_host_is_taken_over_only_once_its_heartbeat_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray node that died mid-cell leaves a lock no pid check can judge: its untouched heartbeat tells."""
    import time

    from lit_mc.studies import store as store_module

    monkeypatch.setattr(store_module, "HEARTBEAT_S", 0.05)
    store = ResultsStore(tmp_path)
    store.locks_dir.mkdir(parents=True)
    lock = store.locks_dir / "abc.lock"
    lock.write_text("another-node 12345\n")
    assert not store_module._holder_is_gone(lock)  # fresh: its holder may still be training
    old = time.time() - 6 * 0.05
    os.utime(lock, (old, old))
    assert store_module._holder_is_gone(lock)
    with store.claim("abc") as train:  # taken over; while held, this process's heartbeat keeps it fresh
        assert train and lock.read_text().split()[1] == str(os.getpid())
        os.utime(lock, (old, old))
        time.sleep(0.3)
        assert time.time() - lock.stat().st_mtime < 0.2
    assert not lock.exists()
