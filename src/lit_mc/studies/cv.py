"""k-fold cross-validation: the same config trained on folds 0..k-1, each metric summarised with its error.

Lightning has no k-fold loop, and none is needed: the DataModule already selects fold ``f`` of a stratified
k-fold split (``--data.num_folds k --data.fold f``), so cross-validation is a loop of ordinary ``fit`` runs.
Every finished fold is a cell of a :class:`ResultsStore` (keyed by its resolved config), so an interrupted CV
resumes where it stopped and a repeated one costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from scipy import stats

from lit_mc.errors import DivergedError
from lit_mc.runs import read_metrics_csv
from lit_mc.studies.store import ResultsStore, config_key

STEP_COLUMNS = ("epoch", "step")  # the columns of metrics.csv that index a row rather than measure the run
VOLATILE = ("logger", "enable_progress_bar", "enable_model_summary")  # trainer keys that do not change results
log = logging.getLogger(__name__)


@contextmanager
def _lightning_quiet():
    """Lightning's per-trainer info lines ("GPU available", tips, "Seed set") at warning level: a cell whose key is
    only computed (a dry run lists dozens) builds a trainer that never trains, and they would bury the listing."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def summarize(values: list[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std, standard error and the two-sided Student-t confidence interval of the mean."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    sem = std / math.sqrt(n) if n > 1 else float("nan")
    if n < 2:
        low = high = float("nan")
    elif sem == 0:  # identical values: the interval collapses (scipy would warn and return nan)
        low = high = mean
    else:
        low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return {"n": n, "mean": mean, "std": std, "sem": sem, "ci_low": float(low), "ci_high": float(high)}


def read_curves(metrics_csv: Path) -> list[dict[str, float]]:
    """Per-epoch rows from a CSVLogger ``metrics.csv`` (train and val metrics land in separate rows)."""
    by_epoch: dict[int, dict[str, float]] = {}
    for row in read_metrics_csv(metrics_csv):
        if "epoch" in row:
            entry = by_epoch.setdefault(row["epoch"], {"epoch": row["epoch"]})
            entry.update({k: v for k, v in row.items() if k not in STEP_COLUMNS})
    return [by_epoch[e] for e in sorted(by_epoch)]


def forward_flops(model: torch.nn.Module, input_shape: tuple[int, ...] | None) -> int | None:
    """FLOPs of one forward pass of one input of ``input_shape`` (torch's FlopCounterMode; multiply-add = 2 FLOPs);
    ``None`` when the DataModule states no ``input_shape`` (a model whose input is not one tensor)."""
    if input_shape is None:
        return None
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(counter.get_total_flops())


def _flops(cli: Any) -> int | None:
    return forward_flops(cli.model, getattr(cli.datamodule, "input_shape", None))


class CrossValidation:
    """Train ``config`` (plus command-line ``overrides``) on every fold and store one cell per fold.

    Args:
        config: path of a ``lit-mc fit`` config file.
        folds: number of folds k (>= 2), or 1 for one run on the config's own hold-out split (no error bar).
        overrides: extra LightningCLI arguments, e.g. ``["--model.init_args.lr=0.05"]``.
        store: results store; run folders (checkpoints, logs) go to ``runs_dir``, which is not committed.
        runs_dir: where the fold runs write their Lightning logs.
    """

    def __init__(
        self,
        config: str | Path,
        folds: int,
        overrides: list[str] | None = None,
        store: ResultsStore | None = None,
        runs_dir: str | Path = "lightning_logs/cv",
        seeds: list[int] | None = None,
        test: bool = False,
        wandb: tuple[str, str] | None = None,
        tested_from: dict[int, tuple[str, str]] | None = None,
    ) -> None:
        self.config = Path(config)
        self.folds = folds
        self.overrides = list(overrides or [])
        self.store = store or ResultsStore(Path("results") / "cv" / self.config.stem)
        self.runs_dir = Path(runs_dir)
        self.seeds = list(seeds) if seeds else None
        self.test = test
        self.wandb = wandb  # (job type, group): each run also logs to W&B, the folds of a setting in one group
        # fold -> (checkpoint, cell key) of a run whose weights this setting's fold would repeat exactly (it changes
        # only the evaluation): that fold is tested from the checkpoint instead of trained
        self.tested_from = dict(tested_from or {})

    @property
    def repeats(self) -> int:
        """Runs per setting: one per seed when ``seeds`` are given (each on the config's own split), else folds."""
        return len(self.seeds) if self.seeds else self.folds

    def _cli_args(self, fold: int) -> list[str]:
        if self.seeds:  # repeat r: another seed for the weights, the order and the augmentation
            seed = self.seeds[fold]
            repeat = [f"--seed_everything={seed}", f"--data.init_args.seed={seed}"]
        elif self.folds > 1:
            repeat = [f"--data.init_args.num_folds={self.folds}", f"--data.init_args.fold={fold}"]
        else:
            repeat = []
        csv_logger = [f"--trainer.logger.init_args.save_dir={self.runs_dir}",
                      f"--trainer.logger.init_args.name={self.config.stem}"]  # fmt: skip
        if self.wandb is not None:  # the logger is not part of a cell's key: the same cell with or without W&B
            job, group = self.wandb
            loggers = [
                {"class_path": "lightning.pytorch.loggers.CSVLogger",
                 "init_args": {"save_dir": str(self.runs_dir), "name": self.config.stem}},
                {"class_path": "lightning.pytorch.loggers.WandbLogger",
                 "init_args": {"project": "lit-mc", "job_type": job, "group": group, "save_dir": str(self.runs_dir),
                               "name": f"{group} {'seed' if self.seeds else 'fold'} {fold}"}},
            ]  # fmt: skip
            csv_logger = [f"--trainer.logger={json.dumps(loggers)}"]
        return [
            "--config", str(self.config), *self.overrides, *repeat, f"--test_after_fit={str(self.test).lower()}",
            *csv_logger,
        ]  # fmt: skip

    def resolve(self, fold: int) -> tuple[Any, dict[str, Any], str]:
        """The fold's CLI (trainer, model and data built, nothing run), its resolved config and its cell key."""
        from lit_mc.runner import run_lightning_cli

        cli = run_lightning_cli(self._cli_args(fold), run=False)
        resolved = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False))
        for key in VOLATILE:
            resolved.get("trainer", {}).pop(key, None)
        return cli, resolved, config_key(resolved)

    def resolved(self, fold: int) -> tuple[dict[str, Any], str]:
        """The fold's resolved config and cell key, nothing trained (its run folder released again)."""
        with _lightning_quiet():
            cli, resolved, key = self.resolve(fold)
        cli.release_unused_run_dirs()
        return resolved, key

    def cell_key(self, fold: int) -> str:
        return self.resolved(fold)[1]

    def run_fold(self, fold: int) -> dict[str, Any]:
        """Train fold ``fold`` unless its cell exists (or another process is training it); returns the cell."""
        cli, resolved, key = self.resolve(fold)  # a W&B run left open in this process is finished there (runner)
        try:
            with self.store.claim(key) as mine:
                if not mine:
                    record = self.store.read(key)
                    if "flops" not in record:  # cells stored before FLOPs were recorded get them, without training
                        record = {
                            **record,
                            "flops": _flops(cli),
                        }
                        self.store.write(key, record)
                    if self.needs_test_correct(record):  # tested before per-image results were recorded
                        record = self._add_test_correct(cli, record)
                        self.store.write(key, record)
                    return record
                if fold in self.tested_from:
                    record = self._test_from(cli, resolved, key, fold, *self.tested_from[fold])
                else:
                    record = self._train(cli, resolved, key, fold)
                self.store.write(key, record)
                return record
        finally:
            if self.wandb is not None:  # one W&B run per cell: the next cell in this process starts its own
                import wandb

                wandb.finish()
            cli.release_unused_run_dirs()

    def _train(self, cli: Any, resolved: dict[str, Any], key: str, fold: int) -> dict[str, Any]:
        start = time.perf_counter()
        diverged = None
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        except DivergedError as e:  # a diverging setting is a result of the study, not a reason to abort it
            diverged = e.cause
        seconds = time.perf_counter() - start
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if v.numel() == 1}
        if diverged:  # measure the diverged network as it stands, as the study's metric must for every setting
            validated = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]
            metrics = {k: float(v) for k, v in validated.items()}
        if self.test and not diverged:  # the test split, once, with the best checkpoint when there is one
            best = bool(getattr(cli.trainer.checkpoint_callback, "best_model_path", ""))
            tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best" if best else None,
                                      verbose=False)[0]  # fmt: skip
            metrics.update({k: float(v) for k, v in tested.items()})
        correct = _test_correct(cli.model) if self.test and not diverged else None
        train_images = len(cli.datamodule.train_idx) * cli.trainer.current_epoch
        last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
        best = getattr(cli.trainer.checkpoint_callback, "best_model_path", "")
        return {
            "key": key,
            "config": str(self.config),
            "overrides": self.overrides,
            "fold": fold,
            "folds": self.folds,
            "seed": self.seeds[fold] if self.seeds else None,
            "final": metrics,
            "curves": read_curves(Path(cli.trainer.log_dir) / "metrics.csv"),
            "epochs": cli.trainer.current_epoch,
            "diverged": diverged,
            "diverged_step": cli.trainer.global_step if diverged else None,
            "train_images": len(cli.datamodule.train_idx),
            "val_images": len(cli.datamodule.val_idx),
            "wall_s": seconds,
            "images_per_s": train_images / seconds if seconds else None,
            "params": sum(p.numel() for p in cli.model.parameters()),
            "flops": _flops(cli),
            "run_dir": str(cli.trainer.log_dir),
            "tested_checkpoint": (best or (str(last) if last.is_file() else None)) if self.test else None,
            **({"test_correct": correct} if correct is not None else {}),
            "resolved_config": resolved,
        }

    def _test_from(
        self, cli: Any, resolved: dict[str, Any], key: str, fold: int, checkpoint: str, reference: str
    ) -> dict[str, Any]:
        """The cell of a setting that changes only how a trained model is evaluated (e.g. test-time augmentation):
        the reference cell's tested checkpoint, tested again with this setting. Training it would repeat the
        reference run weight for weight; the record is the reference's (curves, epochs, size) with this test."""
        start = time.perf_counter()
        tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint, verbose=False)[0]
        seconds = time.perf_counter() - start
        correct = _test_correct(cli.model)
        base = self.store.read(reference)
        trained = {k: v for k, v in base["final"].items() if not k.startswith("test_")}
        return {
            **base,
            "key": key,
            "overrides": self.overrides,
            "final": {**trained, **{k: float(v) for k, v in tested.items()}},
            "wall_s": seconds,
            "images_per_s": None,
            "tested_from": reference,
            "tested_checkpoint": checkpoint,
            **({"test_correct": correct} if correct is not None else {}),
            "run_dir": str(cli.trainer.log_dir),
            "resolved_config": resolved,
        }

    def needs_test_correct(self, record: dict[str, Any]) -> bool:
        """Whether a stored cell was tested before per-image results were recorded and its tested checkpoint is
        on this machine, so that testing it again adds them (a test, not a training run)."""
        checkpoint = tested_checkpoint(record)
        return (self.test and "test_correct" not in record and not record.get("diverged")
                and checkpoint is not None and Path(checkpoint).is_file())  # fmt: skip

    def _add_test_correct(self, cli: Any, record: dict[str, Any]) -> dict[str, Any]:
        """The stored cell with ``test_correct`` from testing its own checkpoint again with its own settings.
        When that test does not reproduce the stored test accuracy, the checkpoint is not the one the cell was
        scored with: the cell keeps ``test_correct: null`` (and a warning says why) rather than foreign results."""
        checkpoint = tested_checkpoint(record)
        tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint, verbose=False)[0]
        stored, again = record["final"].get("test_acc"), float(tested["test_acc"])
        if stored is not None and abs(stored - again) > 1e-4:
            log.warning("cell %s: testing %s again gives test_acc %.4f, not the stored %.4f; no per-image results "
                        "kept", record["key"], checkpoint, again, stored)  # fmt: skip
            return {**record, "test_correct": None}
        return {**record, "test_correct": _test_correct(cli.model)}

    def summary_path(self) -> Path:
        """``summary.json``, unless it holds the summary of another setting (other overrides or k): then
        ``summary-<hash of config, overrides, k>.json``. A summary of one setting never replaces another's."""
        mine = {"config": str(self.config), "overrides": self.overrides, "folds": self.folds}
        path = self.store.root / "summary.json"
        if path.is_file() and {k: json.loads(path.read_text()).get(k) for k in mine} != mine:
            digest = hashlib.sha256(json.dumps(mine, sort_keys=True).encode()).hexdigest()[:8]
            path = self.store.root / f"summary-{digest}.json"
        return path

    def run(self) -> dict[str, Any]:
        """All folds (finished ones are read back), then the summary, written next to the cells."""
        cells = []
        for fold in range(self.folds):  # a line per fold: each fold's own run shows its progress bar
            print(f"lit-mc: cv of {self.config.name}, fold {fold + 1} of {self.folds}", flush=True)
            cells.append(self.run_fold(fold))
        summary = {
            "config": str(self.config),
            "overrides": self.overrides,
            "folds": self.folds,
            "per_fold": [cell["final"] for cell in cells],
            "summary": {m: summarize([c["final"][m] for c in cells]) for m in sorted(cells[0]["final"])},
            "wall_s": sum(c["wall_s"] for c in cells),
            "cells": [c["key"] for c in cells],
        }
        path = self.summary_path()
        summary["file"] = str(self.store.write_summary(path.stem, summary))
        return summary


def tested_checkpoint(cell: dict[str, Any]) -> str | None:
    """The checkpoint a stored cell was tested with: recorded since the field exists; for cells stored before,
    its run's ``last.ckpt`` when the run kept no ``best*.ckpt`` (testing used the best checkpoint when there was
    one, and which best it was is not known then). None when neither applies."""
    if cell.get("tested_checkpoint"):
        return cell["tested_checkpoint"]
    folder = Path(cell["run_dir"]) / "checkpoints" if cell.get("run_dir") else None
    if folder is None or any(folder.glob("best*.ckpt")):
        return None
    return str(folder / "last.ckpt")


def _test_correct(model: Any) -> str | None:
    """Which test images the last test got right, as one character per image in test-set order ("1" right,
    "0" wrong): 10,000 images take 10 kB of the cell file, where a JSON list would take eight times that.
    None for a model that does not record them."""
    correct = getattr(model, "test_correct", None)
    return None if correct is None else "".join("1" if c else "0" for c in correct.tolist())
