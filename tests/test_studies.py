"""k-fold cross-validation and its results store: statistics, atomic cells, resume without repeating a fold."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import yaml
from scipy import stats

from conftest import QUIET, REPO
from lit_mc.cli import main
from lit_mc.errors import LitMcError
from lit_mc.io import atomic_write_text
from lit_mc.studies import CrossValidation, ResultsStore, Study, config_key, run_study, summarize
from lit_mc.studies.study import compare_to_reference, evaluate_claim, judge_claims

BASELINE = REPO / "configs" / "cifar10" / "baseline.yaml"


def test_summarize_matches_numpy_and_scipy() -> None:
    values = [0.61, 0.64, 0.59, 0.66, 0.62]
    s = summarize(values)
    assert s["mean"] == pytest.approx(np.mean(values)) and s["std"] == pytest.approx(np.std(values, ddof=1))
    low, high = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((low, high))


def test_config_key_ignores_key_order() -> None:
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1}) != config_key({"a": 2, "b": [1, 2]})


def test_atomic_write_failing_midway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up halfway through the bytes: the old file is untouched and the half-written temporary goes."""
    path = tmp_path / "cell.json"
    atomic_write_text(path, "old")
    new = json.dumps({"final": {"val_acc": 0.5}, "curves": list(range(500))})
    during: list[dict[str, bytes]] = []

    def half_then_disk_full(f, data) -> None:  # noqa: ANN001 - lit_mc.io._write_all's signature
        f.write(bytes(data[: len(data) // 2]))
        f.flush()
        during.append({p.name: p.read_bytes() for p in tmp_path.iterdir()})
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lit_mc.io._write_all", half_then_disk_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, new)
    # the write had begun: half the new bytes sat in a temporary file beside the target, the target still old
    (files,) = during
    temporary = [name for name in files if name != "cell.json"]
    assert len(temporary) == 1 and files[temporary[0]] == new.encode()[: len(new) // 2] and files["cell.json"] == b"old"
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["cell.json"]
    with pytest.raises(TypeError):
        atomic_write_text(path, 123)  # type: ignore[arg-type]


@pytest.fixture()
def cv(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CrossValidation:
    monkeypatch.chdir(tmp_path)
    overrides = [
        f"--data.data_dir={cifar_root}",
        "--trainer.max_epochs=1",
        *QUIET,
    ]
    return CrossValidation(BASELINE, 3, overrides, ResultsStore(tmp_path / "store"), runs_dir=tmp_path / "runs")


def test_cv_trains_each_fold_once_and_resumes(cv: CrossValidation, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = cv.run()
    assert summary["folds"] == 3 and len(set(summary["cells"])) == 3
    assert summary["summary"]["val_acc"]["n"] == 3
    cells = cv.store.cells()
    assert sorted(c["fold"] for c in cells) == [0, 1, 2]
    assert all(c["val_images"] == 100 and c["train_images"] == 200 and c["curves"] for c in cells)
    assert cells[0]["curves"][0]["epoch"] == 0 and "val_acc" in cells[0]["curves"][0]

    # a killed CV: one cell is missing; a rerun trains that fold only
    lost = summary["cells"][1]
    cv.store.cell_path(lost).unlink()
    fits: list[int] = []
    original = L.Trainer.fit

    def counting_fit(self, model, datamodule=None, **kwargs):  # noqa: ANN001, ANN003, ANN202
        fits.append(datamodule.fold)
        return original(self, model, datamodule=datamodule, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", counting_fit)
    again = cv.run()
    assert fits == [1] and again["cells"] == summary["cells"]
    assert json.loads((cv.store.root / "summary.json").read_text())["cells"] == summary["cells"]


def test_cv_command_prints_the_table(
    cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    main(
        [
            "cv",
            "--config",
            str(BASELINE),
            "--folds",
            "2",
            f"--data.data_dir={cifar_root}",
            "--trainer.max_epochs=1",
            *QUIET,
        ]
    )
    out = capsys.readouterr().out
    assert (
        "2-fold CV" in out
        and "val_acc" in out
        and (tmp_path / "results" / "cv" / "baseline" / "summary.json").is_file()
    )


def test_cv_command_rejects_one_fold(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["cv", "--config", str(BASELINE), "--folds", "1"])
    assert "too few" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- studies
def _study_file(tmp_path: Path, cifar_root: Path, **extra) -> Path:  # noqa: ANN003
    body = {
        "hypothesis": "A larger learning rate learns faster in one epoch.",
        "reference": "Bengio 2012, Practical recommendations, sec. 3.1.1",
        "base": str(BASELINE),
        "budget": [f"--data.data_dir={cifar_root}", "--trainer.max_epochs=1", *QUIET],
        "folds": 2,
        "grid": {"model.init_args.lr": [0.01, 0.1]},
        "reference_setting": {"model.init_args.lr": 0.01},
        "expectation": {"setting": {"model.init_args.lr": 0.1}, "direction": "higher"},
        **extra,
    }
    path = tmp_path / "lr_study.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_study_file_validation(tmp_path: Path, cifar_root: Path) -> None:
    grid = {"a": [1, 2], "b": ["x", "y", "z"]}
    named = {"reference_setting": {"a": 1, "b": "x"}, "expectation": {"setting": {"a": 2, "b": "z"}}}
    study = Study.load(_study_file(tmp_path, cifar_root, grid=grid, **named))
    assert len(study.settings()) == 6 and study.settings()[0] == {"a": 1, "b": "x"} and study.name == "lr_study"
    with pytest.raises(LitMcError, match="unknown keys"):
        Study.load(_study_file(tmp_path, cifar_root, grdi={}))
    with pytest.raises(LitMcError, match="non-empty list"):
        Study.load(_study_file(tmp_path, cifar_root, grid={"a": 3}))
    with pytest.raises(LitMcError, match="does not exist"):
        Study.load(tmp_path / "nope.yaml")
    with pytest.raises(LitMcError, match="is not a grid point"):  # before any cell trains
        Study.load(_study_file(tmp_path, cifar_root, grid=grid))
    with pytest.raises(LitMcError, match="'Higher' is not higher, lower or equal"):
        Study.load(_study_file(tmp_path, cifar_root, expectation={"setting": {"model.init_args.lr": 0.1},
                                                                  "direction": "Higher"}))  # fmt: skip
    cases = [{"a": 1, "b": 2}, {"a": 3, "b": 6}]
    named = {"reference_setting": cases[0], "expectation": {"setting": cases[1]}}
    assert Study.load(_study_file(tmp_path, cifar_root, grid={}, cases=cases, **named)).settings() == cases
    with pytest.raises(LitMcError, match="both grid and cases"):
        Study.load(_study_file(tmp_path, cifar_root, cases=cases))


def _rows(base: list[float], other: list[float]) -> list[dict]:
    size = {"train_images": 300, "val_images": 100}  # 4 folds: n_test / n_train = 1 / 3
    return [
        {"setting": {"lr": 0.01}, "label": "lr=0.01", "values": base, **size},
        {"setting": {"lr": 0.1}, "label": "lr=0.1", "values": other, **size},
    ]


def _two_sided_p_df3(t: float) -> float:
    """Two-sided p of Student's t with 3 degrees of freedom, in closed form: with theta = atan(t / sqrt 3),
    P(|T| > t) = 1 - (2 / pi) (theta + sin theta cos theta), written with phi = pi / 2 - theta to stay exact for
    large t (Abramowitz & Stegun, sec. 26.7)."""
    phi = math.atan2(math.sqrt(3), abs(t))
    return 2 / math.pi * (phi - math.sin(phi) * math.cos(phi))


def test_closed_form_t_distribution_matches_the_textbook_table() -> None:
    """The 5% two-sided critical value of t with 3 degrees of freedom is 3.182 (any t table), 1% is 5.841."""
    assert _two_sided_p_df3(3.182446) == pytest.approx(0.05, abs=1e-7)
    assert _two_sided_p_df3(5.840909) == pytest.approx(0.01, abs=1e-7)
    assert _two_sided_p_df3(0.0) == 1.0


@pytest.mark.parametrize(
    "other,direction,word,t",
    [  # differences from base; t = mean / sqrt((1/4 + 1/3) sd^2) by hand (Nadeau & Bengio's correction, k = 4)
        ([0.60, 0.62, 0.61, 0.63], "higher", "supported", 0.1075 / math.sqrt(7 / 12 * 0.005**2)),  # d=.10 .11 .11 .11
        ([0.40, 0.42, 0.41, 0.43], "higher", "contradicted", -0.0925 / math.sqrt(7 / 12 * 0.005**2)),
        (
            [0.50, 0.52, 0.49, 0.51],
            "higher",
            "inconclusive",
            -0.0025 / math.sqrt(7 / 12 * 11 / 120000),
        ),  # d=0 .01 -.01 -.01, s^2 = 11/120000
        ([0.40, 0.42, 0.41, 0.43], "lower", "supported", -0.0925 / math.sqrt(7 / 12 * 0.005**2)),
    ],
)
def test_verdict_from_the_corrected_paired_test(other: list[float], direction: str, word: str, t: float) -> None:
    from lit_mc.studies.study import Claim

    study = Study("s", "h", "r", "b", {"lr": [0.01, 0.1]}, folds=4, reference_setting={"lr": 0.01})
    base = [0.50, 0.51, 0.50, 0.52]
    (comparison,) = compare_to_reference(study, _rows(base, other))
    assert comparison["mean_difference"] == pytest.approx((sum(other) - sum(base)) / 4, rel=1e-9)
    assert comparison["mean_difference"] / comparison["se"] == pytest.approx(t, rel=1e-9)
    assert comparison["p_value"] == pytest.approx(_two_sided_p_df3(t), rel=1e-6, abs=1e-12)
    claim = evaluate_claim(study, Claim("c", [{"lr": 0.01}, {"lr": 0.1}], direction), _rows(base, other))
    judge_claims("val_acc", [claim])
    assert claim["verdict"] == word and claim["verdict_text"].startswith(word)


def test_study_runs_resumes_and_reports(
    cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _study_file(tmp_path, cifar_root)
    main(["study", "run", str(path)])
    report = json.loads((tmp_path / "results" / "studies" / "lr_study" / "study.json").read_text())
    assert [row["label"] for row in report["rows"]] == ["lr=0.01", "lr=0.1"]
    assert all(len(row["values"]) == 2 for row in report["rows"]) and report["verdict"]
    assert len(list((tmp_path / "results" / "studies" / "cells").glob("*.json"))) == 4  # shared by all studies

    monkeypatch.setattr(L.Trainer, "fit", lambda *a, **k: pytest.fail("a finished cell was trained again"))
    main(["study", "run", str(path)])
    capsys.readouterr()
    main(["study", "report", "lr_study"])
    out = capsys.readouterr().out
    assert "claim: " in out and "lr=0.1" in out and "Bengio" in out
    for figure in ("learning_curves.png", "metric.png"):
        assert (tmp_path / "results" / "studies" / "lr_study" / figure).stat().st_size > 1000
    assert not (tmp_path / "results" / "studies" / "lr_study" / "heatmap.png").exists()  # a 1-D grid
    # the second budget's figures go beside the first budget's, not over them
    folder = tmp_path / "results" / "studies" / "lr_study"
    figures = {f: (folder / f).read_bytes() for f in ("learning_curves.png", "metric.png")}
    (folder / "study_second_budget.json").write_text((folder / "study.json").read_text())
    main(["study", "report", "lr_study", "--second-budget"])
    capsys.readouterr()
    assert {f: (folder / f).read_bytes() for f in figures} == figures
    assert (folder / "metric_second_budget.png").stat().st_size > 1000

    # a campaign still under way: the report from the file shows what is stored, with no verdict, and trains nothing
    missing = report["rows"][1]["cells"][1]
    (tmp_path / "results" / "studies" / "cells" / f"{missing}.json").unlink()
    main(["study", "report", str(path)])
    out = capsys.readouterr().out
    assert "in progress" in out and "no verdict" in out and "claim: " not in out
    progress = json.loads((tmp_path / "results" / "studies" / "lr_study" / "study_progress.json").read_text())
    assert not progress["complete"]
    base, other = progress["rows"]
    assert base["runs"] == [0, 1] and base["values"] == report["rows"][0]["values"] and base["to_train_now"] == 0
    assert base["cells"] == report["rows"][0]["cells"] and other["cells"] == report["rows"][1]["cells"][:1]
    assert base["claims"] == [] and other["claims"] == [c["claim"] for c in report["claims"]]  # what it will test
    assert other["runs"] == [0] and other["values"] == report["rows"][1]["values"][:1] and other["to_train_now"] == 1
    assert base["minus_reference"] is None  # the reference, and the other setting over the one seed both have:
    assert other["minus_reference"] == {"mean": pytest.approx(other["values"][0] - base["values"][0]), "runs": 1}
    assert json.loads((tmp_path / "results" / "studies" / "lr_study" / "study.json").read_text()) == report


def test_heatmap_for_two_key_grids() -> None:
    from lit_mc.plots import heatmap_figure

    rows = [{"setting": {"lr": lr, "bs": bs}, "summary": {"mean": lr * bs}} for lr in (0.1, 0.01) for bs in (32, 64)]
    rows += [{"setting": {"lr": 0.1, "bs": 256}, "summary": {"mean": 0.5}}]
    fig = heatmap_figure({"rows": rows, "metric": "val_acc"})
    assert fig is not None and fig.axes[0].get_xlabel() == "bs"
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["32", "64", "256"]  # numbers sorted as numbers ("256" < "32" as text)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0.01", "0.1"]
    depth = [
        {"setting": {"channels": c, "hidden": [h]}, "summary": {"mean": 0.7}} for c, h in (([32], 256), ([32, 64], 148))
    ]
    assert heatmap_figure({"rows": depth, "metric": "val_acc"}) is None  # configurations, not axes (it used to crash)


def test_study_with_two_worker_processes(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = Study.load(_study_file(tmp_path, cifar_root))
    store = ResultsStore(tmp_path / "parallel")
    report = run_study(study, store, runs_dir=tmp_path / "runs", jobs=2)
    assert len(store.cells()) == 4 and [len(row["values"]) for row in report["rows"]] == [2, 2]
    assert {c["key"] for c in store.cells()} == {key for row in report["rows"] for key in row["cells"]}
    # each cell from a run that owned its folder: distinct folders, each holding the cell's own config and curves
    assert len({c["run_dir"] for c in store.cells()}) == 4
    for cell in store.cells():
        saved = yaml.safe_load((Path(cell["run_dir"]) / "config.yaml").read_text())
        assert saved["model"]["init_args"]["lr"] == cell["resolved_config"]["model"]["init_args"]["lr"]
        assert saved["data"]["init_args"]["fold"] == cell["fold"] and len(cell["curves"]) == cell["epochs"] == 1


def test_study_killed_mid_cell_resumes_without_losing_or_repeating_a_cell(cifar_root: Path, tmp_path: Path) -> None:
    """SIGKILL ``lit-mc study run`` inside its second cell; the rerun trains the other three cells only."""
    path = _study_file(tmp_path, cifar_root)
    body = yaml.safe_load(path.read_text())
    body["budget"].append("--trainer.callbacks+=killers.KillInCell")
    path.write_text(yaml.safe_dump(body))
    cells = tmp_path / "results" / "studies" / "cells"
    command = [sys.executable, "-m", "lit_mc.cli", "study", "run", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    killed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**env, "KILL_CELLS_DIR": str(cells), "KILL_AFTER_CELLS": "1"})  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    first = list(cells.glob("*.json"))
    assert len(first) == 1 and not list(cells.glob(".*"))  # one whole cell, no half-written file
    stamp = first[0].stat().st_mtime_ns
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(cells.glob("*.json"))) == 4 and first[0].stat().st_mtime_ns == stamp  # kept, not redone
    runs = list((tmp_path / "lightning_logs" / "studies" / "lr_study").glob("*/version_*"))
    assert len(runs) == 5  # 4 cells + the killed one: no finished cell trained twice
    report = json.loads((tmp_path / "results" / "studies" / "lr_study" / "study.json").read_text())
    assert sorted(k for row in report["rows"] for k in row["cells"]) == sorted(p.stem for p in cells.glob("*.json"))


def test_a_diverging_cell_is_stored_as_a_result(cv: CrossValidation) -> None:
    """NaN loss in one setting: the cell records the divergence and the metric measured on the diverged network."""
    cv.overrides.append('--trainer.callbacks+=[{"class_path": "killers.ExplodeAt", "init_args": {"epoch": 0}}]')
    cell = cv.run_fold(0)
    assert cell["diverged"].startswith("training loss became") and 0.0 <= cell["final"]["val_acc"] <= 1.0
    assert cv.store.read(cell["key"])["diverged"] == cell["diverged"]


def test_study_repeated_over_seeds_with_a_test_after_each_run(cifar_root: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """``seeds`` with ``folds: 1`` and ``test: true``: each setting runs once per seed on the config's own split,
    each run is tested once, and the comparison is the plain paired t-test over the seeds (the runs share their
    training images and are scored on one fixed test set, so Nadeau & Bengio's correction does not apply)."""
    monkeypatch.chdir(tmp_path)
    path = _study_file(tmp_path, cifar_root, folds=1, seeds=[0, 1], test=True, metric="test_acc")
    study = Study.load(path)
    study.budget.append("--data.val_size=50")
    store = ResultsStore(tmp_path / "seeds")
    report = run_study(study, store, runs_dir=tmp_path / "runs")
    cells = store.cells()
    assert sorted(c["seed"] for c in cells) == [0, 0, 1, 1] and all("test_acc" in c["final"] for c in cells)
    assert all(c["resolved_config"]["seed_everything"] == c["seed"] for c in cells)
    (comparison,) = report["comparisons"]
    assert comparison["test"] == "paired t-test over seeds" and comparison["df"] == 1
    base, other = (row["values"] for row in report["rows"])
    diffs = [a - b for a, b in zip(other, base, strict=True)]
    if diffs[0] != diffs[1]:
        assert comparison["p_value"] == pytest.approx(float(stats.ttest_rel(other, base).pvalue))
    with pytest.raises(LitMcError, match="seeds"):
        Study.load(_study_file(tmp_path, cifar_root, folds=2, seeds=[0, 1]))


def test_a_setting_that_changes_only_the_evaluation_is_tested_from_the_reference_run(
    cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test-time augmentation changes no weight: its cells wait for the reference runs, then test their
    checkpoints with TTA (the reference's curves, a new test); a run whose checkpoint is gone trains instead."""
    from lit_mc.studies.study import StudyRun, build_report, missing_cells

    monkeypatch.chdir(tmp_path)
    tta = "model.init_args.tta"
    path = _study_file(tmp_path, cifar_root, folds=1, seeds=[0, 1], test=True, metric="test_acc",
                       grid={tta: [0, 2]}, reference_setting={tta: 0},
                       expectation={"setting": {tta: 2}, "direction": "higher"})  # fmt: skip
    study = Study.load(path)
    study.budget.append("--data.val_size=50")
    store, runs = ResultsStore(tmp_path / "tta"), tmp_path / "runs"
    listed = missing_cells(study, store, runs)
    assert len(listed) == 4 and sum("after its reference run" in label for label in listed) == 2
    assert len(StudyRun(study, store, runs).pending()) == 2  # the reference runs first
    run_study(study, store, runs_dir=runs)
    cells = {(c["resolved_config"]["model"]["init_args"]["tta"], c["seed"]): c for c in store.cells()}
    for seed in (0, 1):
        trained, tested = cells[0, seed], cells[2, seed]
        assert tested["tested_from"] == trained["key"] and tested["tested_checkpoint"] == trained["tested_checkpoint"]
        assert tested["curves"] == trained["curves"] and tested["run_dir"] != trained["run_dir"]
        assert "test_acc" in tested["final"] and tested["final"]["train_loss"] == trained["final"]["train_loss"]
        for cell in (trained, tested):  # which test images each run got right, one character per image
            right = cell["test_correct"]
            assert set(right) <= {"0", "1"} and right.count("1") / len(right) == pytest.approx(
                cell["final"]["test_acc"]
            )
    report = build_report(StudyRun(study, store, runs))
    assert [t["run"] for t in report["comparisons"][0]["per_image"]] == [0, 1]  # McNemar per seed
    for t, seed in zip(report["comparisons"][0]["per_image"], (0, 1), strict=True):
        a, b = cells[2, seed]["test_correct"], cells[0, seed]["test_correct"]
        assert t["only_setting_right"] == sum(x == "1" and y == "0" for x, y in zip(a, b, strict=True))
        assert t["images"] == len(a) and 0 <= t["p"] <= 1
    from lit_mc.report import study_markdown, study_progress_markdown
    from lit_mc.studies.study import build_progress

    table = study_markdown(report).split("McNemar's exact test")[1]
    assert table.count("| tta=2 | tta=0 |") == 2  # one line per seed
    assert study_progress_markdown(build_progress(StudyRun(study, store, runs))).count("McNemar p") == 3  # + note
    # a cell stored before per-image results were kept is tested again from its checkpoint, not retrained
    stale = {k: v for k, v in cells[0, 0].items() if k != "test_correct"}
    store.write(stale["key"], stale)
    assert [label for label in missing_cells(study, store, runs) if "tested again" in label] == [
        "tta=0, seed 0 (tested again: which images it gets right)"
    ]
    run_study(study, store, runs_dir=runs)
    assert store.read(stale["key"]) == cells[0, 0]
    # TTA off again, from a checkpoint that is gone: that cell trains
    (tmp_path / "tta" / "cells" / f"{cells[2, 1]['key']}.json").unlink()
    Path(cells[0, 1]["tested_checkpoint"]).unlink()
    assert "only tested" not in "".join(missing_cells(study, store, runs))
    run_study(study, store, runs_dir=runs)
    again = {c["key"]: c for c in store.cells()}[cells[2, 1]["key"]]
    assert "tested_from" not in again and again["epochs"] == 1


def test_study_cells_logged_to_wandb_grouped_by_setting(cifar_root: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """``--wandb``: each cell is also an (offline) W&B run in the group of its study and setting; the cells and
    their keys are those of the same study without W&B."""
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = _study_file(tmp_path, cifar_root)
    wandb = pytest.importorskip("wandb")
    (tmp_path / "elsewhere").mkdir()
    wandb.init(mode="offline", dir=str(tmp_path / "elsewhere"))  # a run left open in the process (another test's)
    main(["study", "run", str(path), "--wandb"])
    assert wandb.run is None
    cells = sorted(p.name for p in (tmp_path / "results" / "studies" / "cells").glob("*.json"))
    runs = sorted((tmp_path / "lightning_logs" / "studies").rglob("offline-run-*"))
    assert len(cells) == 4 and len(runs) == 4
    from lit_mc.studies.study import missing_cells

    store = ResultsStore(tmp_path / "results" / "studies" / "lr_study", tmp_path / "results" / "studies" / "cells")
    assert missing_cells(Study.load(path), store, runs_dir=tmp_path / "runs") == []  # the same keys without W&B
    assert len({run.parent.parent for run in runs}) == 4  # each in its own run folder: the cell's, beside metrics.csv
    assert all((run.parent.parent / "metrics.csv").is_file() for run in runs)


def test_mean_curve_goes_on_past_the_fold_that_stopped_first() -> None:
    """The mean curve used to end at the shortest fold, hiding how the longer folds went on."""
    from lit_mc.plots import _mean_curve, learning_curves_figure

    short = {"curves": [{"epoch": 0, "val_acc": 0.2}, {"epoch": 1, "val_acc": 0.4}]}
    long = {"curves": [{"epoch": 0, "val_acc": 0.4}, {"epoch": 1, "val_acc": 0.6}, {"epoch": 2, "val_acc": 0.7}]}
    epochs, means, counts = _mean_curve([short, long], "val_acc")
    assert epochs == [0, 1, 2] and counts == [2, 2, 1] and means == pytest.approx([0.3, 0.5, 0.7])
    rows = [{"label": f"s{i}", "cells": ["a", "b"]} for i in range(9)]  # past SMALL_MULTIPLES: one panel each
    fig = learning_curves_figure(rows, {"a": short, "b": long}, "t")
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == [f"s{i}" for i in range(9)]
