"""Hypothesis studies: a hand-set grid of config overrides, each setting cross-validated, each claim judged.

A study file (YAML) states the hypothesis, its reference, the base config, the grid, the budget and the claims
the hypothesis makes::

    name: depth
    hypothesis: A fourth conv stage raises validation accuracy; two stages lower it.
    reference: Simonyan & Zisserman, ICLR 2015
    base: configs/cifar10/tuned.yaml
    budget: ["--trainer.max_epochs=15", "--data.subset=0.6"]  # applied to every cell
    folds: 3              # stratified folds (1: one run on the base config's hold-out split, nothing tested)
    metric: val_acc
    score: final          # the metric at the last epoch, or `best` (its best epoch, as early stopping picks)
    grid:                 # cartesian product of the lists ...
      model.init_args.model.init_args.channels: [[32, 64], [32, 64, 128], [32, 64, 128, 256]]
    # cases: [{...}, {...}]                    # ... or explicit settings, when keys move together
    reference_setting: {model.init_args.model.init_args.channels: [32, 64, 128]}
    claims:               # one verdict each; every setting named here must be a grid point
      - claim: a fourth stage helps
        setting: {model.init_args.model.init_args.channels: [32, 64, 128, 256]}
        direction: higher                      # than `against`, by default the reference setting
      - claim: accuracy rises with depth
        order: [{...: [32, 64]}, {...: [32, 64, 128]}, {...: [32, 64, 128, 256]}]  # each higher than the last
    retune: {key: model.init_args.lr, factors: [0.5, 1, 2], fold: 0}   # optional: each setting's own LR choice
    retry_diverged: 0.5   # optional: a diverged setting runs again at its LR times this (twice at most)
    seeds: [0, 1, 2]      # optional, with folds: 1: repeats by seed instead of by fold (a plain paired t-test then)
    test: true            # optional: test each run once after training (its best checkpoint); metric: test_acc
    second_budget: ["--trainer.max_epochs=30", "--data.subset=0.6"]    # optional: `lit-mc study run --second-budget`

Every (setting, fold) is one Lightning run stored as a cell (see :class:`ResultsStore`), so a study resumes
after a kill without losing or repeating a cell. There is no search: the grid, and the retuning grid, are the
user's. The statistics (corrected resampled t-test, Holm, minimum detectable effect) are in ``stats.py``.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import math
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from rich.progress import track

from lit_mc.checkpoints import evaluation_settings
from lit_mc.errors import LitMcError
from lit_mc.settings import differences
from lit_mc.studies.cv import CrossValidation, summarize, tested_checkpoint
from lit_mc.studies.stats import (
    ALPHA,
    POWER,
    corrected_paired_t,
    equivalence_p,
    holm,
    mcnemar,
    minimum_detectable_effect,
)
from lit_mc.studies.store import ResultsStore

Setting = dict[str, Any]
DIRECTIONS = ("higher", "lower", "equal")
RETRIES = 2  # a diverged setting is re-run at most this many times (each at a lower learning rate)


@dataclass
class Claim:
    """One testable statement: the settings of ``order`` score ``higher`` (or ``lower``) one after the other, or
    (``equal``) each within ``margin`` of the one before (an equivalence test)."""

    claim: str
    order: list[Setting]
    direction: Literal["higher", "lower", "equal"] = "higher"
    margin: float | None = None


@dataclass
class Retune:
    """Each setting's learning rate chosen by the study: ``key`` at the setting's own value times each factor,
    trained on fold ``fold``; the best there by the study's score is the one every fold is compared at."""

    key: str = "model.init_args.lr"
    factors: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    fold: int = 0


@dataclass
class Study:
    """A parsed, validated study file."""

    name: str
    hypothesis: str
    reference: str
    base: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    cases: list[Setting] = field(default_factory=list)
    metric: str = "val_acc"
    score: Literal["final", "best"] = "final"
    folds: int = 3
    budget: list[str] = field(default_factory=list)
    reference_setting: Setting | None = None
    claims: list[Claim] = field(default_factory=list)
    retune: Retune | None = None
    retry_diverged: float | None = None
    second_budget: list[str] | None = None
    seeds: list[int] | None = None
    test: bool = False

    @property
    def repeats(self) -> int:
        """Runs per setting: one per seed (``seeds``), else one per fold."""
        return len(self.seeds) if self.seeds else self.folds

    @classmethod
    def load(cls, path: str | Path) -> Study:
        """Read and check a study file: every mistake is refused here, before any cell trains."""
        path = Path(path)
        if not path.is_file():
            raise LitMcError(f"study file {path} does not exist", "pass a file from configs/studies/")
        raw = yaml.safe_load(path.read_text()) or {}
        where = f"study file {path}"
        missing = [k for k in ("hypothesis", "reference", "base") if k not in raw]
        if "grid" not in raw and "cases" not in raw:
            missing.append("grid or cases")
        if missing:
            raise LitMcError(f"{where} lacks {', '.join(missing)}", "add them (see lit_mc/studies/study.py)")
        known = {f.name for f in fields(cls)} | {"expectation"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise LitMcError(f"{where} has unknown keys {unknown}", f"use only {sorted(known)}")
        raw.setdefault("name", path.stem)
        raw_claims = list(raw.pop("claims", None) or [])
        if "expectation" in raw:  # the older one-claim form: {setting, direction} against the reference
            raw_claims.append({"claim": raw["hypothesis"], **_mapping(raw.pop("expectation"), where)})
        retune = raw.pop("retune", None)
        if retune is not None:
            retune = _dataclass_from(Retune, retune, f"{where}: retune")
            if not retune.factors or any(not isinstance(f, int | float) or f <= 0 for f in retune.factors):
                raise LitMcError(f"{where}: retune factors {retune.factors}", "give positive numbers, e.g. [0.5, 1, 2]")
        study = cls(**raw, retune=retune)
        study._check(where)  # the grid first: the claims' default `against` is its reference point
        study.claims = [_parse_claim(c, study.reference_point(), where) for c in raw_claims]
        study._check(where)
        return study

    def _check(self, where: str) -> None:
        if self.grid and self.cases:
            raise LitMcError(f"{where} has both grid and cases", "keep one of them")
        if any(not isinstance(v, list) or not v for v in self.grid.values()):
            raise LitMcError(f"{where}: every grid key needs a non-empty list", "write key: [v1, v2, ...]")
        if not all(isinstance(case, dict) and case for case in self.cases):
            raise LitMcError(f"{where}: every case must be a mapping of overrides", "write - {key: value}")
        if not isinstance(self.folds, int) or self.folds < 1:
            raise LitMcError(f"{where}: folds={self.folds}", "use 1 (the base config's hold-out) or k >= 2 folds")
        if self.score not in ("final", "best"):
            raise LitMcError(f"{where}: score {self.score!r} is not final or best", "write score: final or best")
        seeds = self.seeds
        if seeds is not None and (self.folds != 1 or len(seeds) < 2 or len(set(seeds)) < len(seeds)):
            raise LitMcError(
                f"{where}: seeds {seeds} with folds={self.folds}",
                "give two or more distinct seeds, with folds: 1 (each seed on the config's own split)",
            )
        if self.retune is not None and not 0 <= self.retune.fold < self.repeats:
            raise LitMcError(f"{where}: retune fold {self.retune.fold} of {self.repeats}", "pick a fold in range")
        if self.retry_diverged is not None and not 0 < self.retry_diverged < 1:
            raise LitMcError(f"{where}: retry_diverged={self.retry_diverged}", "give a factor in (0, 1), e.g. 0.5")
        settings = self.settings()
        named = [("reference_setting", self.reference_setting)] if self.reference_setting is not None else []
        named += [(f"claim {c.claim!r}", s) for c in self.claims for s in c.order]
        for what, setting in named:  # checked now, not after the whole grid has trained
            if setting not in settings:
                raise LitMcError(f"{where}: {what} names {setting}, which is not a grid point", "pick grid points")

    def settings(self) -> list[Setting]:
        """The explicit cases, or the grid's cartesian product, in file order."""
        if self.cases:
            return [dict(case) for case in self.cases]
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def reference_point(self) -> Setting:
        """The setting every other one is compared with: ``reference_setting``, or the first setting."""
        return self.reference_setting or self.settings()[0]

    def at_second_budget(self) -> Study:
        if not self.second_budget:
            raise LitMcError(f"study {self.name} states no second_budget", "add second_budget: [...] to its file")
        return replace(self, budget=list(self.second_budget), second_budget=None)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LitMcError(f"{where}: {value!r} is not a mapping", "write {key: value, ...}")
    return value


def _dataclass_from(kind: type, value: Any, where: str) -> Any:
    value = _mapping(value, where)
    allowed = {f.name for f in fields(kind)}
    if set(value) - allowed:
        raise LitMcError(f"{where} has unknown keys {sorted(set(value) - allowed)}", f"use only {sorted(allowed)}")
    return kind(**value)


def _parse_claim(raw: Any, reference_setting: Setting, where: str) -> Claim:
    """``{claim, setting, against?, direction?}`` (a pair) or ``{claim, order: [...], direction?}``."""
    raw = dict(_mapping(raw, f"{where}: a claim"))
    direction = raw.pop("direction", "higher")
    if direction not in DIRECTIONS:
        raise LitMcError(
            f"{where}: claim direction {direction!r} is not higher, lower or equal",
            "write direction: higher, lower or equal (lower case)",
        )
    margin = raw.pop("margin", None)
    if (direction == "equal") != (margin is not None) or (margin is not None and not margin > 0):
        raise LitMcError(
            f"{where}: an `equal` claim needs a positive margin, and only it has one (got {direction}, {margin})",
            "write direction: equal with margin: 0.01 (in the metric's units)",
        )
    text = raw.pop("claim", None)
    if not isinstance(text, str) or not text:
        raise LitMcError(f"{where}: a claim lacks its sentence", "write claim: <what the hypothesis predicts>")
    if "order" in raw:
        order = raw.pop("order")
        if not isinstance(order, list) or len(order) < 2:
            raise LitMcError(f"{where}: claim {text!r} needs an order of two settings or more", "list them")
    else:
        if "setting" not in raw:
            raise LitMcError(f"{where}: claim {text!r} names no setting", "write setting: {KEY: VALUE} or order")
        against = raw.pop("against", reference_setting)
        order = [against, raw.pop("setting")]
    if raw:
        raise LitMcError(
            f"{where}: claim {text!r} has unknown keys {sorted(raw)}", "use claim, setting, against, order, direction"
        )
    for setting in order:
        _mapping(setting, f"{where}: claim {text!r}")
    if any(a == b for a, b in itertools.pairwise(order)):
        raise LitMcError(f"{where}: claim {text!r} compares a setting with itself", "name two different settings")
    return Claim(text, [dict(s) for s in order], direction, margin)


def _override_args(setting: Setting) -> list[str]:
    """``{"model.init_args.lr": 0.1}`` -> ``["--model.init_args.lr=0.1"]`` (lists and bools as JSON)."""
    return [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in setting.items()]


def setting_label(setting: Setting) -> str:
    return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in setting.items())


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise LitMcError(f"the resolved config has no {dotted}", "name an option the base config sets")
        value = value[part]
    return value


def _round(value: float) -> float:
    return float(f"{value:.10g}")  # 0.1 * 3 -> 0.3, so a retuned value's cell key is the one a user would type


# -- which cells a study needs ---------------------------------------------------------------------------------
Task = tuple[CrossValidation, int]


class StudyRun:
    """A study bound to its store: which cells it needs now, and its report once they are all stored.

    A study without ``retune`` needs every (setting, fold) at once. With ``retune`` it needs the candidates on the
    retuning fold first, then every fold of the chosen candidate; with ``retry_diverged`` a diverged setting
    then needs its retry. :meth:`pending` returns what is needed *now*; run it again after those cells trained.
    """

    def __init__(
        self, study: Study, store: ResultsStore, runs_dir: str | Path = "lightning_logs/studies", wandb: bool = False
    ) -> None:
        self.study = study
        self.wandb = wandb
        self.store = store
        self.runs_dir = Path(runs_dir) / study.name
        self._keys: dict[tuple[str, int], str] = {}
        self._resolved: dict[tuple[str, int], dict[str, Any]] = {}
        self._base_values: dict[str, Any] = {}

    def cv(self, setting: Setting, fold: int | None = None) -> CrossValidation:
        """The setting's runs; with ``fold``, that fold is tested from the reference run's checkpoint when
        :meth:`reference_checkpoint` finds one."""
        overrides = [*self.study.budget, *_override_args(setting)]
        study = self.study
        wandb = (study.name, f"{study.name}: {setting_label(setting)}") if self.wandb else None
        found = self.reference_checkpoint(setting, fold) if fold is not None else None
        return CrossValidation(study.base, study.folds, overrides, self.store, self.runs_dir, study.seeds, study.test,
                               wandb, {fold: found} if found else None)  # fmt: skip

    def resolved(self, setting: Setting, fold: int) -> dict[str, Any]:
        """The resolved config of the setting's fold (resolved once; nothing trains)."""
        ident = (json.dumps(setting, sort_keys=True), fold)
        if ident not in self._resolved:
            self._resolved[ident], self._keys[ident] = self.cv(setting).resolved(fold)
        return self._resolved[ident]

    def key(self, setting: Setting, fold: int) -> str:
        self.resolved(setting, fold)
        return self._keys[(json.dumps(setting, sort_keys=True), fold)]

    def evaluation_only(self, setting: Setting, fold: int) -> bool:
        """Whether ``setting`` differs from the reference setting only in how a trained model is evaluated (the
        model class's ``evaluation_settings``, e.g. test-time augmentation), in a study that tests its runs:
        training it would repeat the reference run weight for weight."""
        study, reference = self.study, self.study.reference_point()
        if not study.test or setting == reference:
            return False
        mine, theirs = self.resolved(setting, fold), self.resolved(reference, fold)
        if {k: v for k, v in mine.items() if k != "model"} != {k: v for k, v in theirs.items() if k != "model"}:
            return False
        changed = differences(theirs["model"], mine["model"])
        return bool(changed) and set(changed) <= set(evaluation_settings(str(mine["model"].get("class_path") or "")))

    def reference_checkpoint(self, setting: Setting, fold: int) -> tuple[str, str] | None:
        """``(checkpoint, cell key)`` of the reference run of ``fold`` that an :meth:`evaluation_only` setting is
        tested from: its tested checkpoint, when it is on this machine. None when the setting must train."""
        if not self.evaluation_only(setting, fold):
            return None
        cell = self.cell(self.study.reference_point(), fold)
        if cell is None or cell.get("diverged") or not cell.get("run_dir"):
            return None
        checkpoint = tested_checkpoint(cell)
        return (checkpoint, cell["key"]) if checkpoint is not None and Path(checkpoint).is_file() else None

    def cell(self, setting: Setting, fold: int) -> dict[str, Any] | None:
        key = self.key(setting, fold)
        return self.store.read(key) if self.store.has(key) else None

    def score(self, cell: dict[str, Any]) -> float:
        """The value a cell contributes: the metric at the last epoch, or at its best epoch (``score: best``)."""
        metric = self.study.metric
        if self.study.score == "final":
            return cell["final"][metric]
        values = [row[metric] for row in cell["curves"] if metric in row and math.isfinite(row[metric])]
        if not values:
            return cell["final"][metric]
        return min(values) if metric.endswith("loss") else max(values)

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.study.metric.endswith("loss") else a > b

    def _candidates(self, setting: Setting) -> list[Setting]:
        retune = self.study.retune
        if retune is None:
            return [setting]
        if retune.key in setting:
            own = setting[retune.key]
        else:
            ident = json.dumps(setting, sort_keys=True)
            if ident not in self._base_values:
                resolved, _ = self.cv(setting).resolved(retune.fold)
                self._base_values[ident] = _lookup(resolved, retune.key)
            own = self._base_values[ident]
        return [{**setting, retune.key: _round(own * f)} for f in retune.factors]

    def plan(self, setting: Setting) -> tuple[list[tuple[Setting, int]], dict[str, Any] | None]:
        """``(cells still needed now, None)``, or ``([], how the setting was run)`` once all it needs is stored."""
        study, info = self.study, {"retune": None, "retries": []}
        candidates = self._candidates(setting)
        chosen = setting
        if study.retune is not None:
            fold = study.retune.fold
            needed = [(c, fold) for c in candidates if self.cell(c, fold) is None]
            if needed:
                return needed, None
            scores = [self.score(self.cell(c, fold)) for c in candidates]
            best = 0
            for i, value in enumerate(scores):
                if self._better(value, scores[best]):
                    best = i
            chosen = candidates[best]
            info["retune"] = {
                "key": study.retune.key,
                "fold": fold,
                "values": [c[study.retune.key] for c in candidates],
                "scores": scores,
                "chosen": chosen[study.retune.key],
            }
        for _ in range(RETRIES + 1):
            needed = [(chosen, f) for f in range(study.repeats) if self.cell(chosen, f) is None]
            if needed:
                return needed, None
            diverged = [f for f in range(study.repeats) if self.cell(chosen, f).get("diverged")]
            if not diverged or study.retry_diverged is None or len(info["retries"]) == RETRIES:
                break
            key = study.retune.key if study.retune else "model.init_args.lr"
            value = chosen.get(key)
            if value is None:
                resolved, _ = self.cv(chosen).resolved(0)
                value = _lookup(resolved, key)
            retry = {**chosen, key: _round(value * study.retry_diverged)}
            info["retries"].append({"diverged": chosen, "folds": diverged, "retry": retry})
            chosen = retry
        info["run_setting"] = chosen
        return [], info

    def pending(self, retests: bool = True) -> list[tuple[Task, str]]:
        """The cells needed now, each with its key (the same cell named twice is listed once). An
        :meth:`evaluation_only` cell waits for its reference run (a later round), to be tested from its checkpoint.
        ``retests=False``: only cells to train or test for the first time, not stored cells to test again."""
        return [(task, key) for task, key, _ in self.pending_labelled(retests=retests)]

    def pending_labelled(self, waiting: bool = False, retests: bool = True) -> list[tuple[Task, str, str]]:
        """:meth:`pending`, each cell also with its label (``setting, fold f`` or ``setting, seed s``): fold by
        fold (seed by seed), settings in file order within a fold, so that a study cut short has every setting
        at its first fold or seed rather than some settings at all of them and others at none. ``waiting``: also
        the evaluation-only cells whose reference run is still to train (what a dry run lists). A tested study also
        lists its stored cells that have no per-image test results while their checkpoint is here (tested again,
        a test, not a training run; for McNemar's test), unless ``retests`` is False."""
        out, seen, reference = [], set(), self.study.reference_point()
        for setting in self.study.settings():
            needed, info = self.plan(setting)
            run_setting = info["run_setting"] if info else setting if self.study.retune is None else None
            if retests and self.study.test and run_setting is not None:  # tested before per-image results were kept
                cv = self.cv(run_setting)
                for fold in range(self.study.repeats):
                    key = self.key(run_setting, fold)
                    if key not in seen and self.store.has(key) and cv.needs_test_correct(self.store.read(key)):
                        seen.add(key)
                        which = f"seed {self.study.seeds[fold]}" if self.study.seeds else f"fold {fold}"
                        label = f"{setting_label(run_setting)}, {which} (tested again: which images it gets right)"
                        out.append((fold, ((cv, fold), key, label)))
            for run_setting, fold in needed:
                key = self.key(run_setting, fold)
                if key in seen:
                    continue
                seen.add(key)
                which = f"seed {self.study.seeds[fold]}" if self.study.seeds else f"fold {fold}"
                label = f"{setting_label(run_setting)}, {which}"
                if self.evaluation_only(run_setting, fold) and self.cell(reference, fold) is None:
                    if waiting:
                        label += " (after its reference run, tested from its checkpoint)"
                        out.append((fold, ((self.cv(run_setting), fold), key, label)))
                    continue
                cv = self.cv(run_setting, fold)
                if cv.tested_from:
                    label += " (only tested: from the reference run's checkpoint)"
                out.append((fold, ((cv, fold), key, label)))
        return [cell for _, cell in sorted(out, key=lambda pair: pair[0])]  # stable: file order within a fold

    def cells_used(self) -> list[str]:
        """Every stored cell the study consulted (retuning candidates and retries included)."""
        return sorted({key for key in self._keys.values() if self.store.has(key)})


# -- running ---------------------------------------------------------------------------------------------------
def _run_cell(cv: CrossValidation, fold: int, single_thread: bool = False) -> dict[str, Any]:
    """One (setting, fold) run; a top-level function so that worker processes (and Ray) can be handed it."""
    import torch

    if single_thread:
        torch.set_num_threads(1)  # N workers on N cores: one thread each, or they fight over the cores
    return cv.run_fold(fold)


Executor = Literal["local", "ray"]
RAY_RETRIES = 3  # re-runs of a cell whose Ray worker or node died


def _run_cell_at(cwd: str, env: dict[str, str], cv: CrossValidation, fold: int) -> dict[str, Any]:
    """A cell as a Ray task: in the driver's working folder, with its ``LIT_MC_*`` settings, so that the relative
    paths of configs, data, runs and results mean the same on every node (a shared file system at the same path)."""
    os.chdir(cwd)
    os.environ.update(env)
    return _run_cell(cv, fold, True)


def _run_with_ray(tasks: list[Task], description: str, address: str | None) -> None:
    """Each cell a Ray task of one CPU, on a running cluster (``address``) or a local Ray started here.

    Ray schedules; lit-mc only submits and collects. On a cluster every node needs the project installed and the
    working folder (configs, data, results) on a shared file system at the same path, since each task writes its
    own cell. A task whose worker or node dies is re-run by Ray (``max_retries``); the re-run takes over the dead
    holder's lock (see :mod:`lit_mc.studies.store`), and a finished cell is never trained again.
    """
    try:
        import ray
    except ImportError:
        raise LitMcError("the ray executor needs Ray", "pip install 'lit-mc[ray]' (or use --jobs N)") from None
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_run_cell_at)
    env = {k: v for k, v in os.environ.items() if k.startswith("LIT_MC_")}
    pending = [remote.remote(os.getcwd(), env, cv, fold) for cv, fold in tasks]
    list(track((ray.get(ref) for ref in pending), description, total=len(tasks)))


def train_missing_cells(
    runs: list[StudyRun],
    jobs: int = 1,
    executor: Executor = "local",
    address: str | None = None,
    stop_at: dt.datetime | None = None,
) -> int:
    """Train, in one pool, every cell the studies need and the store lacks. A cell that several studies share (the
    same resolved config) trains once; studies first, cells in file order, so a campaign cut short has finished the
    first studies' cells. Local workers ask the studies again each time a cell is stored, so the cells it unlocks (a
    retuned setting's other folds once its candidates are in) start on the next free core instead of waiting for
    the slowest cell of a round; Ray gets the cells round by round. No cell (or round) starts after ``stop_at``;
    the ones in flight finish. Returns the number of cells run."""

    def late() -> bool:
        if stop_at is not None and dt.datetime.now() >= stop_at:
            left = len(_pending_tasks(runs))
            print(f"lit-mc: --stop-at {stop_at:%H:%M} reached: {left} cells needed now are not started", flush=True)
            return True
        return False

    trained = 0
    if executor == "ray":
        while (tasks := _pending_tasks(runs)) and not late():
            _run_with_ray([task for task, _, _ in tasks], f"{len(tasks)} cells of {len(runs)} studies", address)
            trained += len(tasks)
        return trained
    if jobs > 1:
        return _train_as_cores_free(runs, jobs, late)
    while (tasks := _pending_tasks(runs)) and not late():
        (cv, fold), _, label = tasks[0]
        print(f"lit-mc: cell {trained + 1}: {label} ({len(tasks) - 1} more needed now)", flush=True)
        _run_cell(cv, fold)
        trained += 1
    return trained


def _pending_tasks(runs: list[StudyRun], busy: Collection[str] = ()) -> list[tuple[Task, str, str]]:
    """The cells the studies need now, in study and file order, each once, without the ``busy`` keys."""
    tasks, seen = [], set(busy)
    for run in runs:
        for task, key, label in run.pending_labelled():
            if key not in seen:
                seen.add(key)
                tasks.append((task, key, f"{run.study.name}: {label}"))
    return tasks


def _train_as_cores_free(runs: list[StudyRun], jobs: int, late: Callable[[], bool]) -> int:
    """:func:`train_missing_cells` on ``jobs`` local worker processes (one thread each); none starts once
    ``late()``."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    trained, running, stopped = 0, {}, False
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        while True:
            free = jobs - len(running)
            if free and not stopped and _pending_tasks(runs, busy=running.values()):
                stopped = late()
            for (cv, fold), key, label in [] if stopped else _pending_tasks(runs, busy=running.values())[:free]:
                print(f"lit-mc: started {label}", flush=True)
                running[pool.submit(_run_cell, cv, fold, True)] = key
            if not running:
                return trained
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                running.pop(future)
                future.result()  # a failed cell stops the campaign (the cells still running finish first)
                trained += 1
                print(f"lit-mc: {trained} cells stored, {len(running)} running", flush=True)


def missing_cells(study: Study, store: ResultsStore, runs_dir: str | Path = "lightning_logs/studies") -> list[str]:
    """The labels (setting, fold) of the cells a ``run`` would train now: nothing is trained here. A retuned study
    lists its candidates first; the chosen settings' other folds follow once those are stored."""
    return [label for _, _, label in StudyRun(study, store, runs_dir).pending_labelled(waiting=True)]


def run_study(
    study: Study,
    store: ResultsStore,
    runs_dir: str | Path = "lightning_logs/studies",
    jobs: int = 1,
    executor: Executor = "local",
    address: str | None = None,
    summary_name: str = "study",
) -> dict[str, Any]:
    """Train every cell the study needs and the store lacks; return (and store) its report."""
    run = StudyRun(study, store, runs_dir)
    train_missing_cells([run], jobs, executor, address)
    report = build_report(run)
    store.write_summary(summary_name, report)
    return report


# -- the report ------------------------------------------------------------------------------------------------
def _row(run: StudyRun, setting: Setting) -> dict[str, Any]:
    study = run.study
    needed, info = run.plan(setting)
    if needed:
        raise LitMcError(
            f"study {study.name}: {len(needed)} cells of {setting_label(setting)} are not stored",
            f"run `lit-mc study run` on {study.name}'s file",
        )
    chosen = info["run_setting"]
    cells = [run.cell(chosen, f) for f in range(study.repeats)]
    consulted = [run.cell(c, study.retune.fold) for c in run._candidates(setting)] if study.retune else []
    consulted += [run.cell(r["diverged"], f) for r in info["retries"] for f in range(study.repeats)]
    extra = [c for c in consulted if c is not None and c["key"] not in {x["key"] for x in cells}]
    values = [run.score(c) for c in cells]
    return {
        "setting": setting,
        "label": setting_label(setting),
        "run_setting": chosen,
        "values": values,
        "summary": summarize(values),
        "wall_s": sum(c["wall_s"] for c in cells + extra),
        "cells": [c["key"] for c in cells],
        "extra_cells": [c["key"] for c in extra],
        "params": cells[0].get("params"),
        "flops": cells[0].get("flops"),
        "epochs": [c.get("epochs") for c in cells],
        "train_images": cells[0].get("train_images"),
        "val_images": cells[0].get("val_images"),
        "diverged": [
            {"fold": c["fold"], "step": c.get("diverged_step"), "cause": c["diverged"]}
            for c in cells
            if c.get("diverged")
        ],
        "retune": info["retune"],
        "retries": info["retries"],
        "tested_from": [c["tested_from"] for c in cells if c.get("tested_from")],  # the runs it re-tested
    }


def _compare(study: Study, better: dict[str, Any], worse: dict[str, Any]) -> dict[str, Any]:
    """``better`` minus ``worse`` over the paired folds, with the corrected t-test and the detectable effect."""
    diffs = [a - b for a, b in zip(better["values"], worse["values"], strict=True)]
    # n_test / n_train of Nadeau & Bengio: folds share training images; seeds train on the same ones and are
    # compared on one fixed split, for which the ordinary paired test (no correction) is the right one
    ratio = 0.0 if study.seeds else (worse["val_images"] or 1) / (worse["train_images"] or 1)
    test = corrected_paired_t(diffs, ratio)
    sd = math.sqrt(sum((d - test["mean"]) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else math.nan
    return {
        "setting": better["setting"],
        "label": better["label"],
        "against": worse["label"],
        "against_setting": worse["setting"],
        "differences": diffs,
        "mean_difference": test["mean"],
        "ci_low": test["ci_low"],
        "ci_high": test["ci_high"],
        "se": test["se"],
        "df": test["df"],
        "p_value": test["p"],
        "test": ("paired t-test over seeds" if study.seeds else "Nadeau-Bengio corrected resampled t-test")
        if test["df"]
        else "none (one run per setting)",
        "cohens_d": test["mean"] / sd if sd else math.nan,
        "mde": minimum_detectable_effect(test["se"], test["df"]),
    }


def compare_to_reference(study: Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each setting against the reference setting, with raw and (within the study) Holm-adjusted p-values."""
    reference = study.reference_point()
    base = next(row for row in rows if row["setting"] == reference)
    comparisons = [_compare(study, row, base) for row in rows if row is not base]
    for c, adjusted in zip(comparisons, holm([c["p_value"] for c in comparisons]), strict=True):
        c["p_holm"] = adjusted
    return comparisons


def _points(metric: str, value: float) -> str:
    """A difference as a reader reads it: accuracy-like metrics in points (x100), losses as they are."""
    if metric.endswith("loss"):
        return f"{value:+.3f}"
    return f"{100 * value:+.1f} points"


def evaluate_claim(study: Study, claim: Claim, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A claim's links (each setting of its order against the one before), its p-value and its evidence.

    A claim with several links holds only if every link does (an intersection-union test: the claim's p is the
    largest of its links' p). When a link goes the other way, the claim's p is that link's (the strongest such).
    An ``equal`` claim's p is the largest of its links' equivalence (TOST) p-values."""
    by_setting = {json.dumps(r["setting"], sort_keys=True): r for r in rows}
    links = []
    for before, after in itertools.pairwise(claim.order):
        a, b = (by_setting[json.dumps(s, sort_keys=True)] for s in (before, after))
        links.append(_compare(study, b, a))
    if claim.direction == "equal":
        for c in links:
            c["p_equivalence"] = equivalence_p(c["mean_difference"], c["se"], c["df"], claim.margin)
        as_claimed = all(abs(c["mean_difference"]) < claim.margin for c in links)
        p = max(c["p_equivalence"] for c in links)
    else:
        sign = 1 if claim.direction == "higher" else -1
        opposite = [c["p_value"] for c in links if sign * c["mean_difference"] <= 0]
        as_claimed = not opposite
        p = min(opposite) if opposite else max(c["p_value"] for c in links)
    return {
        "claim": claim.claim,
        "direction": claim.direction,
        "margin": claim.margin,
        "order": [setting_label(s) for s in claim.order],
        "links": links,
        "holds_in_sign": as_claimed,
        "p_value": p,
    }


def judge_claims(metric: str, claims: list[dict[str, Any]], family: int | None = None) -> None:
    """Holm-adjust the claims' p-values (across ``claims``, the family) and word each verdict from its numbers."""
    for claim, adjusted in zip(claims, holm([c["p_value"] for c in claims]), strict=True):
        claim["p_holm"] = adjusted
        claim["family_size"] = family or sum(not math.isnan(c["p_value"]) for c in claims)
        claim["verdict"], claim["verdict_text"] = _verdict(metric, claim)


def _verdict(metric: str, claim: dict[str, Any]) -> tuple[str, str]:
    """``supported`` / ``contradicted`` / ``inconclusive`` / ``untested``, and the sentence with its numbers."""
    evidence = "; ".join(
        f"{c['label']} vs {c['against']}: {_points(metric, c['mean_difference'])}"
        + (
            f" (95% CI {_points(metric, c['ci_low'])} to {_points(metric, c['ci_high'])}, p={c['p_value']:.2g},"
            f" detectable: {_points(metric, c['mde']).lstrip('+')})"
            if c["df"]
            else ""
        )
        for c in claim["links"]
    )
    p, adjusted = claim["p_value"], claim["p_holm"]
    if math.isnan(p):
        return "untested", f"untested: one run per setting, no error bar ({evidence})"
    test = f"equivalence within {_points(metric, claim['margin']).lstrip('+')}, " if claim["margin"] else ""
    claims = f"{claim['family_size']} claim" + ("" if claim["family_size"] == 1 else "s")
    tail = f"{test}Holm-adjusted p={adjusted:.2g} over {claims}; {evidence}"
    if adjusted < ALPHA and (claim["holds_in_sign"] or claim["margin"]):
        return "supported", f"supported ({tail})"
    if claim["margin"]:
        outside = [c for c in claim["links"] if c["ci_low"] > claim["margin"] or c["ci_high"] < -claim["margin"]]
        if outside:  # decided by the interval, not by the equivalence test's p (which is then near 1)
            margin = _points(metric, claim["margin"]).lstrip("+")
            return "contradicted", (
                f"contradicted: a difference surely larger than the margin, its 95% interval wholly outside "
                f"±{margin} ({evidence}; the equivalence test fails: Holm-adjusted p={adjusted:.2g} over {claims})"
            )
    elif adjusted < ALPHA:
        return "contradicted", f"contradicted: the opposite effect ({tail})"
    return "inconclusive", f"inconclusive at alpha={ALPHA} ({tail})"


def build_report(run: StudyRun) -> dict[str, Any]:
    """Rows, comparisons with the reference, each claim's verdict (Holm within the study), and the budget."""
    study = run.study
    rows = [_row(run, s) for s in study.settings()]
    comparisons = compare_to_reference(study, rows)
    if study.test:  # each run against the reference's run of the same seed, image by image
        base = next(row for row in rows if row["setting"] == study.reference_point())
        runs = study.seeds or list(range(study.folds))
        for comparison in comparisons:
            row = next(r for r in rows if r["setting"] == comparison["setting"])
            comparison["per_image"] = per_image_tests(
                run, dict(zip(runs, row["cells"], strict=True)), dict(zip(runs, base["cells"], strict=True))
            )
    claims = [evaluate_claim(study, c, rows) for c in study.claims]
    judge_claims(study.metric, claims)
    tested = [c for c in comparisons if c["df"]]
    report = {
        "name": study.name,
        "hypothesis": study.hypothesis,
        "reference": study.reference,
        "metric": study.metric,
        "score": study.score,
        "folds": study.folds,
        "seeds": study.seeds,
        "budget": study.budget,
        "retune": None if study.retune is None else vars(study.retune),
        "rows": rows,
        "comparisons": comparisons,
        "claims": claims,
        "mde": _median([c["mde"] for c in tested]),
        "mde_note": f"median over the comparisons: the smallest true difference a two-sided corrected t-test at "
        f"alpha={ALPHA} detects with {POWER:.0%} power, at this study's budget and fold spread",
        "cells_used": run.cells_used(),
        "wall_s": sum(row["wall_s"] for row in rows),
    }
    report["verdict"] = "; ".join(f"{c['claim']}: {c['verdict']}" for c in claims) or "no claims stated"
    return report


def build_progress(run: StudyRun) -> dict[str, Any]:
    """What a study has stored so far, setting by setting: the scores of the runs that exist and how many cells
    it still needs now. A campaign spans sessions, and its first results should be readable before the last cell
    lands; nothing is compared or judged until every cell is in (:func:`build_report`)."""
    study, rows = run.study, []
    for setting in study.settings():
        needed, info = run.plan(setting)
        retuning = study.retune is not None and all(f == study.retune.fold for _, f in needed)
        if info is not None:
            chosen = info["run_setting"]
        elif retuning:  # candidates still missing: no rate is chosen yet
            chosen = None
        else:  # the setting (or its diverged retry) whose folds are missing
            chosen = needed[0][0]
        cells = [] if chosen is None else [run.cell(chosen, f) for f in range(study.repeats)]
        stored = [(f, c) for f, c in enumerate(cells) if c is not None]
        candidates = []
        if study.retune is not None:  # the re-tuning so far: each candidate's score on its fold, None until stored
            for c in run._candidates(setting):
                cell = run.cell(c, study.retune.fold)
                candidates.append({"value": c[study.retune.key], "score": None if cell is None else run.score(cell)})
        values = [run.score(c) for _, c in stored]
        rows.append({
            "setting": setting,
            "label": setting_label(setting),
            "run_setting": chosen,
            "runs": [study.seeds[f] if study.seeds else f for f, _ in stored],
            "cells": [c["key"] for _, c in stored],
            "values": values,
            "summary": summarize(values) if values else None,
            "repeats": study.repeats,
            "to_train_now": len(needed),
            "retuning": info is None and retuning,
            "candidates": candidates,
            "claims": [c.claim for c in study.claims if setting in c.order and setting != study.reference_point()],
            "wall_s": sum(c["wall_s"] for _, c in stored),
            "by_run": {f: run.score(c) for f, c in stored},
        })  # fmt: skip
    reference_row = next(r for r in rows if r["setting"] == study.reference_point())
    reference = reference_row["by_run"]
    for row in rows:  # minus the reference over the runs both have stored (same fold or seed): a first look
        mine = row.pop("by_run")
        diffs = [mine[f] - reference[f] for f in sorted(mine) if f in reference] if mine is not reference else []
        row["minus_reference"] = {"mean": sum(diffs) / len(diffs), "runs": len(diffs)} if diffs else None
        if diffs and study.test:
            row["minus_reference"]["per_image"] = per_image_tests(
                run, dict(zip(row["runs"], row["cells"], strict=True)),
                dict(zip(reference_row["runs"], reference_row["cells"], strict=True)))  # fmt: skip
    return {
        "name": study.name,
        "hypothesis": study.hypothesis,
        "metric": study.metric,
        "repeat": "seed" if study.seeds else "fold",
        "retunes": study.retune is not None,
        "rows": rows,
        "complete": all(r["to_train_now"] == 0 for r in rows),
    }


def per_image_tests(run: StudyRun, mine: dict[Any, str], theirs: dict[Any, str]) -> list[dict[str, Any]]:
    """McNemar's test (:func:`~lit_mc.studies.stats.mcnemar`) of each run the two settings both have (same seed or
    fold, keyed by it in ``mine`` and ``theirs``, cell keys as values), on the test images both got right or wrong:
    whether one run's difference from the other exceeds the test set's sampling error. Runs whose cells were
    stored without per-image results are left out."""
    out = []
    for which in sorted(set(mine) & set(theirs)):
        a, b = (run.store.read(k).get("test_correct") if run.store.has(k) else None
                for k in (mine[which], theirs[which]))  # fmt: skip
        if a and b and len(a) == len(b):
            test = mcnemar([c == "1" for c in a], [c == "1" for c in b])
            out.append({"run": which, "only_setting_right": test["only_a"], "only_reference_right": test["only_b"],
                        "images": test["n"], "p": test["p"]})  # fmt: skip
    return out


def _median(values: list[float]) -> float:
    values = sorted(v for v in values if math.isfinite(v))
    if not values:
        return math.nan
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def adjust_study_set(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Holm across every claim (and, separately, every comparison) of a set of study reports: each claim gets
    its set-wide adjusted p and verdict (``p_holm_set``); returns one row per claim for the summary table."""
    reports = [copy.deepcopy(r) for r in reports]
    claims = [(r, c) for r in reports for c in r.get("claims", [])]
    family = sum(not math.isnan(c["p_value"]) for _, c in claims)
    for (report, claim), adjusted in zip(claims, holm([c["p_value"] for _, c in claims]), strict=True):
        claim["p_holm_study"] = claim["p_holm"]
        claim["p_holm"] = adjusted
        claim["family_size"] = family
        claim["verdict"], claim["verdict_text"] = _verdict(report["metric"], claim)
    comparisons = [c for r in reports for c in r.get("comparisons", [])]
    for c, adjusted in zip(comparisons, holm([c["p_value"] for c in comparisons]), strict=True):
        c["p_holm_set"] = adjusted
    for report in reports:
        if report.get("claims"):  # a report from before claims keeps its one verdict line
            report["verdict"] = "; ".join(f"{c['claim']}: {c['verdict']}" for c in report["claims"])
    return reports


def compare_budgets(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    """Per claim, its verdict and effect at the study's budget and at its second budget, and whether they agree
    (the same verdict, and effects of the same sign)."""
    out = []
    for a, b in zip(first["claims"], second["claims"], strict=True):
        effect_a = [c["mean_difference"] for c in a["links"]]
        effect_b = [c["mean_difference"] for c in b["links"]]
        same_sign = all((x > 0) == (y > 0) for x, y in zip(effect_a, effect_b, strict=True))
        out.append(
            {
                "claim": a["claim"],
                "verdict": a["verdict"],
                "verdict_second_budget": b["verdict"],
                "effects": effect_a,
                "effects_second_budget": effect_b,
                "same_sign": same_sign,
                "agree": same_sign and a["verdict"] == b["verdict"],
            }
        )
    return out
