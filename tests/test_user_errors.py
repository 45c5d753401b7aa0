"""Every mistake gets one line: ``lit-mc: error: <cause>. Fix: <fix>``, exit 2, no traceback, nothing left behind.

One table of bad inputs, each run through ``lit-mc`` (in process, and a few through the installed entry point),
each checked for the exit status, the single error line naming its cause, and no new folder under
``lightning_logs/`` or the results store.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import QUIET, REPO, baseline_fit
from lit_mc.cli import main

BASELINE = str(REPO / "configs" / "cifar10" / "baseline.yaml")


class Pickled:
    """An object whose pickle names code to run: a checkpoint holding one must be refused."""

    def __reduce__(self):  # noqa: ANN204
        return (os.getcwd, ())


@pytest.fixture(scope="module")
def world(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with one finished 1-epoch run and files for the cases to point at."""
    root = tmp_path_factory.mktemp("errors")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main(baseline_fit(cifar_root, "--trainer.max_epochs=1", "--test_after_fit=false"))
    finally:
        os.chdir(cwd)
    (root / "empty.yaml").write_text("")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    config = yaml.safe_load(Path(BASELINE).read_text())
    config["model"]["init_args"]["lr"] = float("nan")
    (root / "nan_lr.yaml").write_text(yaml.safe_dump(config))
    (root / "a_folder.ckpt").mkdir()
    (root / "results_file").write_text("not a folder")
    body = {
        "hypothesis": "h",
        "reference": "r",
        "base": BASELINE,
        "folds": 2,
        "grid": {"model.init_args.lr": [0.01, 0.1]},
    }
    studies = {
        "unknown_key": {**body, "expectation": {"setting": {"model.init_args.lr": 0.1}, "dirction": "higher"}},
        "capital_direction": {**body, "expectation": {"setting": {"model.init_args.lr": 0.1}, "direction": "Higher"}},
        "expected_not_in_grid": {**body, "expectation": {"setting": {"model.init_args.lr": 0.3}}},
        "reference_not_in_grid": {**body, "reference_setting": {"model.init_args.lr": 0.5}},
        "claim_direction": {**body, "claims": [_pair_claim("up")]},
        "claim_not_in_grid": {
            **body,
            "claims": [{"claim": "c", "order": [{"model.init_args.lr": 0.01}, {"model.init_args.lr": 0.03}]}],
        },
        "equal_without_margin": {**body, "claims": [_pair_claim("equal")]},
    }
    for name, study in studies.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(study))
    return root


def _pair_claim(direction: str) -> dict:
    """A claim of lr 0.1 against lr 0.01 in ``direction``."""
    return {"claim": "c", "setting": {"model.init_args.lr": 0.1}, "against": {"model.init_args.lr": 0.01},
            "direction": direction}  # fmt: skip


def _fit(data: str, *extra: str) -> list[str]:
    return ["fit", "--config", BASELINE, f"--data.data_dir={data}", "--data.val_size=50", *QUIET, *extra]


# (case, argv with {data} for the fixture's folder, words the error line must contain)
CASES = [
    ("batch_size_negative", _fit("{data}", "--data.batch_size=-8"), ["--data.batch_size=-8", "1 or more"]),
    ("batch_size_zero", _fit("{data}", "--data.batch_size=0"), ["--data.batch_size=0"]),
    ("lr_negative", _fit("{data}", "--model.init_args.lr=-0.1"), ["--model.init_args.lr=-0.1", "positive"]),
    ("lr_nan_option", _fit("{data}", "--model.init_args.lr=nan"), ["--model.init_args.lr=nan", "positive"]),
    ("lr_nan_yaml", ["fit", "--config", "nan_lr.yaml", "--data.data_dir={data}", *QUIET], ["lr=nan", "positive"]),
    ("max_epochs_negative", _fit("{data}", "--trainer.max_epochs=-5"), ["max_epochs=-5"]),
    ("max_epochs_zero", _fit("{data}", "--trainer.max_epochs=0"), ["max_epochs=0 trains nothing"]),
    ("val_size_negative", _fit("{data}", "--data.val_size=-1"), ["--data.val_size=-1"]),
    ("val_size_whole", _fit("{data}", "--data.val_size=1.0"), ["--data.val_size=1.0", "fraction"]),
    ("empty_yaml", ["fit", "--config", "empty.yaml"], ["config empty.yaml is empty"]),
    ("yaml_not_a_mapping", ["fit", "--config", "list.yaml"], ["list.yaml is a list"]),
    ("ckpt_is_a_folder", [*_fit("{data}"), "--ckpt_path=a_folder.ckpt"], ["a_folder.ckpt is a folder"]),
    ("logs_not_writable", [*_fit("{data}"), "--trainer.logger.init_args.save_dir=results_file"],
     ["cannot write run folders in results_file"]),
    ("cv_store_not_writable", ["cv", "--config", BASELINE, "--folds", "2", "--store", "results_file/cv"],
     ["cannot write results in results_file/cv"]),
    ("captioner_on_cifar", _fit("{data}", "--model=lit_mc.captioning.ShowAndTell"),
     ["captioner", "CIFAR10DataModule is not for captioning"]),
    ("study_unknown_expectation_key", ["study", "run", "unknown_key.yaml"], ["unknown keys ['dirction']"]),
    ("study_direction_misspelled", ["study", "run", "capital_direction.yaml"], ["'Higher' is not higher, lower"]),
    ("study_claim_direction", ["study", "run", "claim_direction.yaml"], ["claim direction 'up'"]),
    ("study_claim_not_in_grid", ["study", "run", "claim_not_in_grid.yaml"], ["claim 'c' names", "not a grid point"]),
    ("study_equal_without_margin", ["study", "run", "equal_without_margin.yaml"], ["needs a positive margin"]),
    ("study_expectation_not_in_grid", ["study", "run", "expected_not_in_grid.yaml"], ["not a grid point"]),
    ("study_reference_not_in_grid", ["study", "run", "reference_not_in_grid.yaml"], ["reference_setting", "grid"]),
]  # fmt: skip


def _listing(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if ".locks" not in p.parts}


@pytest.mark.parametrize("case,argv,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(
    case: str,
    argv: list[str],
    words: list[str],
    world: Path,
    cifar_root: Path,
    capsys,
    monkeypatch,  # noqa: ANN001
) -> None:
    monkeypatch.chdir(world)
    before = _listing(world)
    with pytest.raises(SystemExit) as exit_info:
        main([word.replace("{data}", str(cifar_root)) for word in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = [line for line in err.splitlines() if line.startswith("lit-mc: error:")]
    assert len(lines) == 1 and "Fix: " in lines[0], err[-1500:]
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in err
    assert _listing(world) == before  # no run folder, no results, no half-written file


def _last_ckpt(world: Path) -> Path:
    return world / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("damage", ["code", "truncated"])
def test_a_bad_last_checkpoint_through_ckpt_path_last(
    damage: str,
    world: Path,
    cifar_root: Path,
    capsys,
    monkeypatch,  # noqa: ANN001
) -> None:
    """``--ckpt_path last`` finds the run, then refuses its checkpoint in one line (it printed a traceback)."""
    monkeypatch.chdir(world)
    last = _last_ckpt(world)
    good = last.read_bytes()
    try:
        if damage == "code":
            torch.save({"epoch": 0, "payload": Pickled()}, last)
        else:
            last.write_bytes(good[: len(good) // 3])
        with pytest.raises(SystemExit):
            main([*_fit(str(cifar_root)), "--ckpt_path=last"])
    finally:
        last.write_bytes(good)
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("lit-mc: error:")][0]
    expected = "would import and run code (posix.getcwd)" if damage == "code" else "truncated or not a torch"
    assert expected in line and "()" not in line.split("Fix:")[0].replace("(posix.getcwd)", "")


@pytest.mark.parametrize("case", ["lr_negative", "empty_yaml", "study_direction_misspelled"])
def test_the_installed_entry_point_says_the_same(case: str, world: Path, cifar_root: Path) -> None:
    argv, words = next((c[1], c[2]) for c in CASES if c[0] == case)
    exe = Path(sys.executable).with_name("lit-mc")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([str(exe), *[w.replace("{data}", str(cifar_root)) for w in argv]], cwd=world, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("lit-mc: error:") and all(w in line for w in words)


def test_pickled_fixture_is_really_code_carrying() -> None:
    with pytest.raises(pickle.UnpicklingError):
        torch.load(_write_code_checkpoint(), weights_only=True)


def _write_code_checkpoint() -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "x.ckpt"
    torch.save({"payload": Pickled()}, path)
    return path


def test_resume_into_a_read_only_run_folder_is_one_line(world: Path, cifar_root: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    """Root may write anywhere, so the read-only folder is simulated: ``os.access`` answers "no" for it."""
    import lit_mc.runs

    monkeypatch.chdir(world)
    run = _last_ckpt(world).parents[1].resolve()
    real_access = os.access
    monkeypatch.setattr(lit_mc.runs.os, "access", lambda p, mode: Path(p).resolve() != run and real_access(p, mode))
    before = _listing(world)
    with pytest.raises(SystemExit):
        main([*_fit(str(cifar_root)), "--ckpt_path=last"])
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("lit-mc: error:")][0]
    assert "version_0 is not writable" in line and "Fix:" in line and _listing(world) == before
