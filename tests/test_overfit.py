"""`--trainer.overfit_batches=1` proves each model can learn: it must memorise one batch within a step budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import BARE, REPO
from lit_mc.cli import run_lightning_cli

# config, extra overrides, step budget (one step per epoch when overfitting one batch)
CASES = {
    "baseline": ([], 300),
    "batchnorm": ([], 100),
    # the pretrained backbone at the fixture's native 32 px keeps the test fast; the model code path is the same
    "efficientnet_lite0_finetune": (["--model.init_args.model.init_args.input_size=32"], 40),
}


@pytest.mark.parametrize("config", list(CASES))
def test_overfit_one_batch(config: str, cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra, steps = CASES[config]
    monkeypatch.chdir(tmp_path)
    cli = run_lightning_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "cifar10" / f"{config}.yaml"),
            f"--data.data_dir={cifar_root}",
            "--data.val_size=50",
            "--data.batch_size=32",
            "--trainer.overfit_batches=1",
            f"--trainer.max_epochs={steps}",
            "--trainer.limit_val_batches=0",
            "--test_after_fit=false",
            *BARE,
            *extra,
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == steps
    assert float(metrics["train_loss"]) < 0.05 or float(metrics["train_acc"]) == 1.0, metrics
    assert float(metrics["train_loss"]) < 0.5  # memorised, not merely lucky on the argmax


def test_overfit_sees_the_same_batch_every_epoch(cifar_root: Path) -> None:
    from lit_mc.classification.datamodule import CIFAR10DataModule

    class FakeTrainer:
        overfit_batches = 1
        training = True

    dm = CIFAR10DataModule(data_dir=str(cifar_root), val_size=50, batch_size=32)
    dm.trainer = FakeTrainer()  # type: ignore[assignment]
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = next(iter(loader))[1]
    loader.sampler.set_epoch(5)
    assert (next(iter(loader))[1] == first).all()


def test_the_captioning_overfit_benchmark_memorises_a_toy_batch(tmp_path: Path) -> None:
    """benchmarks/overfit_captioning.py on the toy shapes set: its record holds one cross-entropy per step, falling,
    and each picture's greedy caption beside its references, marked memorised exactly when it is one of them."""
    import importlib.util

    from lit_mc.captioning.toy import write_toy_set

    spec = importlib.util.spec_from_file_location("overfit_captioning", REPO / "benchmarks" / "overfit_captioning.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    toy = write_toy_set(tmp_path / "toy", train=12, val=2, test=2, size=32)
    patches = ["--data.encoder.backbone=patches", "--data.encoder.weights=null", "--data.encoder.image_size=32",
               "--data.encoder.patch_size=8", "--data.min_count=1"]  # fmt: skip
    record = bench.overfit("show_attend_tell", toy, steps=60, images=3, extra=patches)
    assert record["steps"] == len(record["curve"]["train_ce"]) == 60 and record["pairs"] == 15
    assert record["final_ce"] < record["first_ce"] / 4
    assert len(record["captions"]) == 3
    for c in record["captions"]:
        assert len(c["references"]) == 5 and c["memorised"] == (c["caption"] in c["references"])
    assert record["memorised"] == sum(c["memorised"] for c in record["captions"]) >= 2
