"""Shared fixtures: tiny data sets written in the real on-disk formats, so every test runs without the real data."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# command-line flags the tests share: no progress output, and (BARE) no logger, checkpoints or config callbacks
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
BARE = ["--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]", *QUIET]


def baseline_fit(data: Path, *extra: str) -> list[str]:
    """``lit-mc fit`` of the baseline config on a fixture folder, 50 validation images, quiet."""
    config = str(REPO / "configs" / "cifar10" / "baseline.yaml")
    return ["fit", "--config", config, f"--data.data_dir={data}", "--data.val_size=50", *QUIET, *extra]


torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@contextlib.contextmanager
def flushed_denormals(flush: bool = True) -> Iterator[None]:
    """Numbers below 1e-38 read as 0 while inside. A net trained to a near-zero loss carries such numbers in its
    gradients, and each CPU operation on one is slow: the LSTM captioners' overfit test ran 3-4x longer for them."""
    torch.set_flush_denormal(flush)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run ``lit-mc argv``, expect exit 2 and exactly one ``lit-mc: error: ... Fix: ...`` line; return it."""
    from lit_mc.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lit-mc: error:")]
    assert len(err) == 1, err
    assert "Fix:" in err[0]
    return err[0]


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test inside its own temporary folder (run folders land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_cifar_images(per_class: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """Class-dependent colour blobs plus noise: learnable, so a test can tell learning from guessing."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    palette = rng.integers(30, 226, size=(10, 3))
    images = rng.normal(0, 25, size=(len(labels), 3, 32, 32))
    images += palette[labels][:, :, None, None]
    for i, y in enumerate(labels):  # a class-specific bright square, so spatial features matter too
        r, c = divmod(int(y), 4)
        images[i, :, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 60
    return np.clip(images, 0, 255).astype(np.uint8).reshape(len(labels), -1), labels.tolist()


def write_cifar_folder(root: Path, per_class: int = 6, test_per_class: int = 4, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` like the official archive (protocol-2 pickles of dicts)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        data, labels = make_cifar_images(per_class, seed + i)
        batch = {
            "batch_label": f"training batch {i} of 5",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{i}_{k}.png" for k in range(len(labels))],
        }
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    data, labels = make_cifar_images(test_per_class, seed + 100)
    test = {"batch_label": "testing batch 1 of 1", "labels": labels, "data": data, "filenames": []}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {"label_names": CLASSES, "num_cases_per_batch": 10 * per_class, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention fixture: 300 training and 40 test images."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_folder(root)
    return root


@pytest.fixture()
def cifar_copy(tmp_path: Path) -> Path:
    """A fresh fixture folder that a test may damage."""
    write_cifar_folder(tmp_path)
    return tmp_path / "cifar-10-batches-py"


def real_cifar_dir() -> Path | None:
    """The real CIFAR-10 when present (``$LIT_MC_DATA`` or ``data/``), else None."""
    for root in (os.environ.get("LIT_MC_DATA"), REPO / "data"):
        if root and (Path(root) / "cifar-10-batches-py" / "test_batch").is_file():
            return Path(root).resolve()  # tests change directory; a relative LIT_MC_DATA would break
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201 - a pytest hook wrapper
    """With ``LIT_MC_REQUIRE_REAL_DATA=1`` (CI, when the real data is beside the project) a skipped integration test
    fails: it means the data step broke, and a skip would hide it."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("LIT_MC_REQUIRE_REAL_DATA") == "1" and "integration" in item.keywords:
        report.outcome = "failed"
        report.longrepr = f"integration test skipped although LIT_MC_REQUIRE_REAL_DATA=1: {report.longrepr}"
