"""k-fold cross-validation and its results store: statistics, atomic cells, resume without repeating a fold."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from scipy import stats

from conftest import REPO
from lit_mc.cli import main
from lit_mc.io import atomic_write_text
from lit_mc.studies import CrossValidation, ResultsStore, config_key, summarize

BASELINE = REPO / "configs" / "cifar10" / "baseline.yaml"


def test_summarize_matches_numpy_and_scipy() -> None:
    values = [0.61, 0.64, 0.59, 0.66, 0.62]
    s = summarize(values)
    assert s["mean"] == pytest.approx(np.mean(values)) and s["std"] == pytest.approx(np.std(values, ddof=1))
    low, high = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((low, high))


def test_config_key_ignores_key_order() -> None:
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1}) != config_key({"a": 2, "b": [1, 2]})


def test_atomic_write_leaves_old_file_or_new_one(tmp_path: Path) -> None:
    path = tmp_path / "cell.json"
    atomic_write_text(path, "old")

    with pytest.raises(TypeError):
        atomic_write_text(path, 123)  # type: ignore[arg-type]  # fails mid-write
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["cell.json"]


@pytest.fixture()
def cv(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CrossValidation:
    monkeypatch.chdir(tmp_path)
    overrides = [
        f"--data.data_dir={cifar_root}",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
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
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
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
