"""Hypothesis studies: a hand-set grid of config overrides, each setting cross-validated, judged against the base.

A study file (YAML) states the hypothesis, its reference, the base config, the grid, the budget and the
expectation to test::

    name: learning_rate
    hypothesis: Plain SGD trains fastest at an intermediate learning rate.
    reference: Bengio, "Practical recommendations for gradient-based training", 2012, sec. 3.1.1
    base: configs/cifar10/baseline.yaml
    budget: ["--trainer.max_epochs=5", "--data.subset=0.2"]   # applied to every cell
    folds: 3                                                  # repeats, as stratified folds
    metric: val_acc
    grid:                                                     # cartesian product of the lists ...
      model.init_args.lr: [0.001, 0.003, 0.01, 0.03, 0.1]
    # cases: [{...}, {...}]                                   # ... or explicit settings, when keys move together
    reference_setting: {model.init_args.lr: 0.01}             # what every other setting is compared with
    expectation: {setting: {model.init_args.lr: 0.03}, direction: higher}

Every (setting, fold) is one Lightning run stored as a cell (see :class:`ResultsStore`), so a study resumes
after a kill without losing or repeating a cell. There is no search: the grid is the user's.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from rich.progress import track
from scipy import stats

from lit_mc.errors import LitMcError
from lit_mc.studies.cv import CrossValidation, summarize
from lit_mc.studies.store import ResultsStore

Setting = dict[str, Any]
ALPHA = 0.05


@dataclass
class Expectation:
    """What the hypothesis predicts: ``setting`` scores ``higher`` or ``lower`` than the reference setting."""

    setting: Setting
    direction: Literal["higher", "lower"] = "higher"


@dataclass
class Study:
    """A parsed study file."""

    name: str
    hypothesis: str
    reference: str
    base: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    cases: list[Setting] = field(default_factory=list)
    metric: str = "val_acc"
    folds: int = 3
    budget: list[str] = field(default_factory=list)
    reference_setting: Setting | None = None
    expectation: Expectation | None = None

    @classmethod
    def load(cls, path: str | Path) -> Study:
        path = Path(path)
        if not path.is_file():
            raise LitMcError(f"study file {path} does not exist", "pass a file from configs/studies/")
        raw = yaml.safe_load(path.read_text()) or {}
        missing = [k for k in ("hypothesis", "reference", "base") if k not in raw]
        if "grid" not in raw and "cases" not in raw:
            missing.append("grid or cases")
        if missing:
            raise LitMcError(f"study file {path} lacks {', '.join(missing)}", "add them (see lit_mc/studies/study.py)")
        expectation = raw.pop("expectation", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known - {"name"})
        if unknown:
            raise LitMcError(f"study file {path} has unknown keys {unknown}", f"use only {sorted(known)}")
        raw.setdefault("name", path.stem)
        if expectation is not None:
            fields = set(Expectation.__dataclass_fields__)
            if not isinstance(expectation, dict) or set(expectation) - fields or "setting" not in expectation:
                raise LitMcError(
                    f"study file {path}: expectation must be a mapping with `setting` (and `direction`), not "
                    f"{expectation!r}",
                    f"write expectation: {{setting: {{KEY: VALUE}}, direction: higher}} (keys: {sorted(fields)})",
                )
            if expectation.get("direction", "higher") not in ("higher", "lower"):
                raise LitMcError(
                    f"study file {path}: expectation direction {expectation['direction']!r} is not higher or lower",
                    "write direction: higher or direction: lower (lower case)",
                )
        study = cls(**raw, expectation=Expectation(**expectation) if expectation else None)
        if study.grid and study.cases:
            raise LitMcError(f"study {study.name} has both grid and cases", "keep one of them")
        if any(not isinstance(v, list) or not v for v in study.grid.values()):
            raise LitMcError(f"study {study.name}: every grid key needs a non-empty list", "write key: [v1, v2, ...]")
        if not all(isinstance(case, dict) and case for case in study.cases):
            raise LitMcError(f"study {study.name}: every case must be a mapping of overrides", "write - {key: value}")
        if study.folds < 2:
            raise LitMcError(f"study {study.name}: folds={study.folds}", "use at least 2 folds for error bars")
        settings = study.settings()
        named = {"reference_setting": study.reference_setting}
        if study.expectation is not None:
            named["expectation setting"] = study.expectation.setting
        for what, setting in named.items():  # checked now, not after the whole grid has trained
            if setting is not None and setting not in settings:
                raise LitMcError(f"study {study.name}: its {what} {setting} is not a grid point", "pick a grid point")
        if study.expectation is not None and study.expectation.setting == (study.reference_setting or settings[0]):
            raise LitMcError(
                f"study {study.name}: the expectation's setting is the reference setting", "name another grid point"
            )
        return study

    def settings(self) -> list[Setting]:
        """The explicit cases, or the grid's cartesian product, in file order."""
        if self.cases:
            return [dict(case) for case in self.cases]
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]


def _override_args(setting: Setting) -> list[str]:
    """``{"model.init_args.lr": 0.1}`` -> ``["--model.init_args.lr=0.1"]`` (lists and bools as JSON)."""
    return [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in setting.items()]


def setting_label(setting: Setting) -> str:
    return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in setting.items())


def _run_cell(cv: CrossValidation, fold: int, single_thread: bool = False) -> dict[str, Any]:
    """One (setting, fold) run; a top-level function so that worker processes (and Ray) can be handed it."""
    import torch

    if single_thread:
        torch.set_num_threads(1)  # N workers on N cores: one thread each, or they fight over the cores
    return cv.run_fold(fold)


Executor = Literal["local", "ray"]


def _run_with_processes(tasks: list, description: str, jobs: int) -> list[dict[str, Any]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        cells = pool.map(_run_cell, *zip(*tasks, strict=True), [True] * len(tasks))
        return list(track(cells, description, total=len(tasks)))


def _run_with_ray(tasks: list, description: str, address: str | None) -> list[dict[str, Any]]:
    """Each cell a Ray task of one CPU, on a running cluster (``address``) or a local Ray started here.

    Ray schedules; lit-mc only submits and collects. On a cluster every node needs the project installed and the
    results store on a shared file system, since each task writes its own cell.
    """
    try:
        import ray
    except ImportError:
        raise LitMcError("the ray executor needs Ray", "pip install 'lit-mc[ray]' (or use --jobs N)") from None
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(_run_cell)
    pending = [remote.remote(cv, fold, True) for cv, fold in tasks]
    return list(track((ray.get(ref) for ref in pending), description, total=len(tasks)))


def missing_cells(study: Study, store: ResultsStore, runs_dir: str | Path = "lightning_logs/studies") -> list[str]:
    """The labels (setting, fold) of the cells a ``run`` would train: nothing is trained here."""
    missing = []
    for setting in study.settings():
        cv = CrossValidation(study.base, study.folds, [*study.budget, *_override_args(setting)], store, runs_dir)
        missing += [f"{setting_label(setting)}, fold {f}" for f in range(study.folds) if not store.has(cv.cell_key(f))]
    return missing


def run_study(
    study: Study,
    store: ResultsStore,
    runs_dir: str | Path = "lightning_logs/studies",
    jobs: int = 1,
    executor: Executor = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Train every (setting, fold) not stored yet and return the summaries and the verdict.

    ``executor="local"`` runs the cells in this process (``jobs=1``) or in ``jobs`` worker processes;
    ``executor="ray"`` hands them to Ray (``address`` of a running cluster, or ``None`` for a local one).
    """
    settings = study.settings()
    runs = Path(runs_dir) / study.name
    cvs = [CrossValidation(study.base, study.folds, [*study.budget, *_override_args(s)], store, runs) for s in settings]
    tasks = [(cv, fold) for cv in cvs for fold in range(study.folds)]
    description = f"study {study.name}: {len(settings)} settings x {study.folds} folds"
    if executor == "ray":
        cells = _run_with_ray(tasks, description, address)
    elif jobs > 1:
        cells = _run_with_processes(tasks, description, jobs)
    else:
        cells = [_run_cell(cv, fold) for cv, fold in track(tasks, description=description)]
    rows = []
    for i, setting in enumerate(settings):
        mine = cells[i * study.folds : (i + 1) * study.folds]
        values = [cell["final"][study.metric] for cell in mine]
        rows.append(
            {
                "setting": setting,
                "label": setting_label(setting),
                "values": values,
                "summary": summarize(values),
                "wall_s": sum(cell["wall_s"] for cell in mine),
                "cells": [cell["key"] for cell in mine],
                "params": mine[0].get("params"),
                "flops": mine[0].get("flops"),
            }
        )
    report = {
        "name": study.name,
        "hypothesis": study.hypothesis,
        "reference": study.reference,
        "metric": study.metric,
        "folds": study.folds,
        "budget": study.budget,
        "rows": rows,
        "comparisons": compare_to_reference(study, rows),
        "wall_s": sum(row["wall_s"] for row in rows),
    }
    report["verdict"] = verdict(study, report["comparisons"])
    store.write_summary("study", report)
    return report


def compare_to_reference(study: Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each setting against the reference setting: mean difference, paired t-test and Cohen's d over folds."""
    reference = study.reference_setting or study.settings()[0]
    base = next((row for row in rows if row["setting"] == reference), None)
    if base is None:
        raise LitMcError(f"study {study.name}: reference_setting {reference} is not in the grid", "pick a grid point")
    comparisons = []
    for row in rows:
        if row is base:
            continue
        diffs = [a - b for a, b in zip(row["values"], base["values"], strict=True)]
        mean = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
        if sd == 0:  # identical differences in every fold: no spread to test against
            p = 1.0 if mean == 0 else 0.0
        else:
            p = float(stats.ttest_rel(row["values"], base["values"]).pvalue)
        comparisons.append(
            {
                "setting": row["setting"],
                "label": row["label"],
                "against": base["label"],
                "mean_difference": mean,
                "cohens_d": mean / sd if sd else math.copysign(math.inf, mean) if mean else 0.0,
                "p_value": p,
            }
        )
    return comparisons


def verdict(study: Study, comparisons: list[dict[str, Any]]) -> str:
    """``supported`` / ``not supported`` / ``inconclusive``, with the numbers, from the expectation's comparison."""
    if study.expectation is None:
        return "no expectation stated: see the comparisons"
    match = next((c for c in comparisons if c["setting"] == study.expectation.setting), None)
    if match is None:
        raise LitMcError(
            f"study {study.name}: the expectation's setting {study.expectation.setting} is not a compared grid point",
            "name a grid point other than the reference setting",
        )
    sign = 1 if study.expectation.direction == "higher" else -1
    delta, p = match["mean_difference"], match["p_value"]
    numbers = f"{match['label']} vs {match['against']}: {delta:+.4f} {study.metric}, paired t-test p={p:.3g}"
    if p < ALPHA and sign * delta > 0:
        return f"supported ({numbers})"
    if p < ALPHA:
        return f"not supported: the opposite effect ({numbers})"
    return f"inconclusive at alpha={ALPHA} over {study.folds} folds ({numbers})"
