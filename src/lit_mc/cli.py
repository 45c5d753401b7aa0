"""The ``lit-mc`` command: LightningCLI for ``fit|validate|test|predict``, plus ``lit-mc data`` for data set-up.

Every user-facing problem surfaces as one line, ``lit-mc: error: <cause>. Fix: <fix>``, and exit status 2:
errors of our own (:class:`LitMcError`), configuration errors from jsonargparse (condensed to their innermost
cause), and unreadable checkpoints (checked before any run folder is made).
"""

from __future__ import annotations

import argparse
import netrc
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import Namespace

from lit_mc.errors import LitMcError

if TYPE_CHECKING:
    from lightning.pytorch.cli import LightningCLI

ERROR_EXIT = 2
FIX_CKPT = "pass a complete .ckpt file written by `lit-mc fit` (runs keep them in lightning_logs/*/checkpoints)"
FIX_CONFIG = "check the option names and types with `lit-mc SUBCOMMAND --help` or `--print_config`"


def _wandb_offline_unless_configured() -> None:
    """W&B logs offline unless the user configured it (``WANDB_MODE``, an API key, or ``wandb login``)."""
    if "WANDB_MODE" in os.environ or "WANDB_API_KEY" in os.environ:
        return
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        logged_in = False
    if not logged_in:
        os.environ["WANDB_MODE"] = "offline"


def condense_parser_error(message: str) -> str:
    """jsonargparse explains a bad option over a dozen nested lines; keep the key and the innermost cause."""
    lines = [line for line in message.splitlines() if line.strip()]
    if not lines:
        return "invalid configuration"
    noise = ("Does not validate", "Subtypes:", "Errors:", "Given value type:", "- Expected a <class 'NoneType'>")
    useful = [line for line in lines[1:] if not line.strip().startswith(noise)]
    causes = [line for line in useful if not line.strip().startswith(("Given value:", "- Problem", "Problem"))]
    deepest = max((len(line) - len(line.lstrip()) for line in causes), default=0)
    innermost = [line.strip().lstrip("- ") for line in causes if len(line) - len(line.lstrip()) == deepest]
    given = [line.strip() for line in useful if line.strip().startswith("Given value:")]
    return " ".join([lines[0].strip(), *innermost, *given[:1]]).rstrip(":")


def check_checkpoint(path: str) -> None:
    """Fail early, in one line, on a checkpoint that is missing, unreadable or would need to run pickled code."""
    import pickle

    import torch

    if path in ("best", "last", "hpc", "registry") or path.startswith("registry:"):
        return  # resolved by Lightning
    if not Path(path).is_file():
        raise LitMcError(f"checkpoint {path} does not exist", FIX_CKPT)
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):  # the file names code to import and call
            culprit = next((line.strip() for line in str(e).splitlines() if "Unsupported global" in line), "")
            raise LitMcError(
                f"refusing checkpoint {path}: loading it would import and run code ({culprit})",
                "only load checkpoints written by `lit-mc fit`; lit-mc never unpickles code",
            ) from None
        raise LitMcError(f"cannot read checkpoint {path} (not a torch checkpoint)", FIX_CKPT) from None
    except Exception as e:  # truncated zip, not a torch file, ...
        raise LitMcError(
            f"cannot read checkpoint {path} ({type(e).__name__}: truncated or not a torch checkpoint)", FIX_CKPT
        ) from None


def _ckpt_path_argument(args: list[str]) -> str | None:
    for i, word in enumerate(args):
        if word.startswith("--ckpt_path="):
            return word.split("=", 1)[1]
        if word == "--ckpt_path" and i + 1 < len(args):
            return args[i + 1]
    return None


def model_and_data_args(path: str) -> list[str]:
    """``--model`` and ``--data`` rebuilt from a checkpoint: ``lit-mc test --ckpt_path X`` needs no config."""
    import json

    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    extra = []
    for key, section in (("model", "hyper_parameters"), ("data", "datamodule_hyper_parameters")):
        hparams = dict(ckpt.get(section) or {})
        hparams.pop("_instantiator", None)
        class_path = hparams.pop("_class_path", None)
        if class_path is None:
            raise LitMcError(f"checkpoint {path} does not record its {key} class", "pass --config of its run")
        extra.append(f"--{key}={json.dumps({'class_path': class_path, 'init_args': hparams})}")
    return extra


def refuse_other_model_class(config: Namespace) -> None:
    """Stop when ``--ckpt_path`` holds a LightningModule of another class than the configured ``--model``."""
    import torch

    section = config.get(config.get("subcommand") or "", None)
    if not section or not section.get("ckpt_path") or not Path(section.ckpt_path).is_file():
        return
    saved = torch.load(section.ckpt_path, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
    wanted, held = section.model.get("class_path"), saved.get("_class_path")
    if held and wanted and held != wanted:
        raise LitMcError(
            f"the checkpoint holds a {held.rsplit('.', 1)[-1]}, not the configured {wanted.rsplit('.', 1)[-1]}",
            "pass the config of the checkpoint's run, or a checkpoint of the configured model",
        )


def _remove_if_empty(folder: str | None) -> None:
    """A run that failed before writing anything leaves no empty run folder behind."""
    if folder and Path(folder).is_dir():
        for sub in sorted(Path(folder).rglob("*"), reverse=True):
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
        if not any(Path(folder).iterdir()):
            Path(folder).rmdir()


def resume_last_run(config: Namespace) -> list[dict[str, float]]:
    """``fit --ckpt_path last``: continue the newest run of the same model and data, in its own run folder.

    Lightning's own ``"last"`` only looks inside the folder of the *new* run, which a fresh process has just made
    empty; here the newest ``last.ckpt`` under the logger's folder whose saved config has the same ``model`` and
    ``data`` sections is chosen, and the logger is pointed at that run's version so its logs continue.
    """
    import yaml

    logger = config.trainer.get("logger")
    init = logger.get("init_args") if isinstance(logger, Namespace | dict) else None
    if init is None:
        raise LitMcError("--ckpt_path last needs a file logger to find earlier runs", "pass the checkpoint's path")
    root = Path(init.get("save_dir") or ".") / (init.get("name") or "lightning_logs")
    wanted = {"model": config.model.as_dict(), "data": config.data.as_dict()}
    candidates = sorted(root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for ckpt in candidates:
        saved_config = ckpt.parent.parent / "config.yaml"
        saved = yaml.safe_load(saved_config.read_text()) if saved_config.is_file() else {}
        if all(same_settings(saved.get(k), v) for k, v in wanted.items()):
            config.ckpt_path = str(ckpt)
            init["version"] = ckpt.parent.parent.name
            print(f"lit-mc: resuming {ckpt}")
            return _metrics_up_to(ckpt.parent.parent / "metrics.csv", _checkpoint_epoch(ckpt))
    raise LitMcError(
        f"no run of this model and data with a last.ckpt under {root}",
        "start without --ckpt_path, or pass the checkpoint's path",
    )


def same_settings(saved: object, wanted: object, defaults: dict[str, object] | None = None) -> bool:
    """Whether a run's saved config section has the settings of ``wanted``. An option that a run's config lacks
    (the run predates it) matches when ``wanted`` gives it its default value, so upgrading lit-mc does not orphan
    earlier runs."""
    if not (isinstance(saved, dict) and isinstance(wanted, dict)):
        return saved == wanted
    if "class_path" in wanted:
        if saved.get("class_path") != wanted["class_path"]:
            return False
        args = _init_defaults(wanted["class_path"])
        return same_settings(saved.get("init_args") or {}, wanted.get("init_args") or {}, args)
    defaults = defaults or {}
    return set(saved) <= set(wanted) and all(
        same_settings(saved[k], v) if k in saved else (k in defaults and defaults[k] == v) for k, v in wanted.items()
    )


def _init_defaults(class_path: object) -> dict[str, object]:
    """The keyword defaults of ``class_path``'s ``__init__`` and its bases' (empty if it cannot be imported)."""
    import importlib
    import inspect

    if not isinstance(class_path, str) or "." not in class_path:
        return {}
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return {}
    defaults: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is not None:
            for p in inspect.signature(init).parameters.values():
                if p.default is not inspect.Parameter.empty:
                    defaults[p.name] = p.default
    return defaults


def _checkpoint_epoch(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def _metrics_up_to(metrics_csv: Path, last_epoch: int) -> list[dict[str, float]]:
    """The logged rows of epochs 0..last_epoch: what the resumed run keeps (later rows are redone)."""
    from lit_mc.studies.cv import read_metrics_csv

    return [row for row in read_metrics_csv(metrics_csv) if row.get("epoch", float("inf")) <= last_epoch]


def restore_metrics(trainer: object, rows: list[dict[str, float]]) -> None:
    """Hand the kept rows to the CSV logger, which empties ``metrics.csv`` when it opens a run folder again."""
    from lightning.pytorch.loggers import CSVLogger

    for logger in getattr(trainer, "loggers", []):
        if rows and isinstance(logger, CSVLogger):
            writer = logger.experiment  # opening it removes the old file; the kept rows are written back with the new
            writer.metrics = [*rows, *writer.metrics]


def run_lightning_cli(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """``lit-mc fit|validate|test|predict``: any LightningModule and LightningDataModule, chosen in config.

    With ``run=False`` the arguments carry no subcommand and the CLI only builds trainer, model and data.
    """
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from lit_mc.callbacks import EpochSeed, LastCheckpoint

    class LitMcCLI(LightningCLI):
        """LightningCLI plus a rich progress bar by default and ``--test_after_fit`` (test the best checkpoint)."""

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_argument(
                "--test_after_fit", type=bool, default=False, help="after fit, test the best checkpoint"
            )

        def before_instantiate_classes(self) -> None:
            self.kept_metrics: list[dict] = []
            if self.subcommand == "fit" and self.config.fit.get("ckpt_path") == "last":
                self.kept_metrics = resume_last_run(self.config.fit)

        def before_fit(self) -> None:
            restore_metrics(self.trainer, self.kept_metrics)

        def _parse_ckpt_path(self) -> None:
            """Lightning lets a checkpoint's hyperparameters replace the configured model, even one of another
            class; a silently swapped model is worse than a clear refusal."""
            refuse_other_model_class(self.config)
            super()._parse_ckpt_path()

        def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
            if config.get("enable_progress_bar") is not False:
                callbacks = [*callbacks, RichProgressBar(leave=True)]
            if config.get("enable_checkpointing") is not False:
                callbacks = [*callbacks, LastCheckpoint()]
            seed = self._get(self.config, "seed_everything")
            if isinstance(seed, int) and not isinstance(seed, bool):
                callbacks = [*callbacks, EpochSeed(seed)]
            return super()._instantiate_trainer(config, callbacks)

        def _run_subcommand(self, subcommand: str) -> None:
            try:
                super()._run_subcommand(subcommand)
            except LitMcError:
                _remove_if_empty(self.trainer.log_dir)
                raise

        def after_fit(self) -> None:
            if self.config.fit.get("test_after_fit"):
                has_best = bool(getattr(self.trainer.checkpoint_callback, "best_model_path", ""))
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if has_best else None)

    words = sys.argv[1:] if args is None else args
    if (ckpt := _ckpt_path_argument(words)) is not None:
        check_checkpoint(ckpt)
        # without a config or a whole --model/--data, both come from the checkpoint; options such as
        # --data.data_dir then apply on top of them
        whole = ("--config", "-c", "--model=", "--data=")
        if run and not any(w.startswith(whole) or w in ("--model", "--data") for w in words):
            args = [words[0], *model_and_data_args(ckpt), *words[1:]]
    _wandb_offline_unless_configured()
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")  # args built above
    try:
        return LitMcCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            parser_kwargs={"exit_on_error": False},  # parse errors raise, and become one line below
            trainer_defaults={
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}},
            },
            save_config_kwargs={"overwrite": True},
        )
    except argparse.ArgumentError as e:
        raise LitMcError(condense_parser_error(str(e)), FIX_CONFIG) from None


def run_data_command(args: list[str]) -> None:
    """``lit-mc data cifar10|flickr8k|toy``: put a data set in place (download, link or generate) and check it."""
    from lit_mc.data.cifar10 import default_data_dir, download_cifar10, load_cifar10, resolve_folder

    parser = argparse.ArgumentParser(prog="lit-mc data", description="Put a data set in place and check it.")
    parser.add_argument("dataset", choices=["cifar10", "flickr8k", "toy"])
    parser.add_argument("--dest", default=None, help="data folder (default: $LIT_MC_DATA or ./data, + /flickr8k)")
    parser.add_argument("--source", default=None, help="flickr8k: a folder with Images/ and Flickr8k_text/ to link")
    opts = parser.parse_args(args)
    if opts.dataset == "flickr8k":
        link_flickr8k(Path(opts.dest) if opts.dest else default_data_dir() / "flickr8k", opts.source)
        return
    if opts.dataset == "toy":
        from lit_mc.captioning.toy import write_toy_set

        dest = write_toy_set(Path(opts.dest) if opts.dest else default_data_dir() / "toy")
        print(f"toy shapes set written to {dest}")
        return
    dest = Path(opts.dest) if opts.dest else default_data_dir()
    if not resolve_folder(dest).is_dir():
        download_cifar10(dest)
    arrays = load_cifar10(dest)
    print(
        f"CIFAR-10 ready in {resolve_folder(dest)}: {len(arrays.train_labels)} training and "
        f"{len(arrays.test_labels)} test images"
    )


def link_flickr8k(dest: Path, source: str | None) -> None:
    """Link ``source``'s ``Images/`` and ``Flickr8k_text/`` into ``dest`` (the feature cache stays in ``dest``).

    Flickr8k has no official download any more (the original form-based link is gone), so there is nothing to
    fetch: the user points at a copy.
    """
    from lit_mc.captioning.annotations import load_annotations

    parts = ("Images", "Flickr8k_text")
    if source is not None:
        missing = [p for p in parts if not (Path(source) / p).is_dir()]
        if missing:
            raise LitMcError(f"{source} has no {' or '.join(missing)} folder", "pass the folder of the Flickr8k copy")
        dest.mkdir(parents=True, exist_ok=True)
        for part in parts:
            link = dest / part
            if link.is_symlink():
                link.unlink()
            if not link.exists():
                link.symlink_to(Path(source).resolve() / part)
    if not all((dest / p).is_dir() for p in parts):
        raise LitMcError(
            f"Flickr8k not found in {dest}",
            "pass --source DIR, a folder with Images/ and Flickr8k_text/ (the dataset cannot be downloaded here)",
        )
    text = dest / "Flickr8k_text"
    ann = load_annotations(dest / "Images", text / "Flickr8k.token.txt", text, None)
    sizes = ", ".join(f"{len(v)} {k}" for k, v in ann.splits.items())
    print(f"Flickr8k ready in {dest}: {len(ann.captions)} captioned images ({sizes})")


def _summary_cells(s: dict[str, float], values: list[float]) -> list[str]:
    """Table cells: mean, std, 95% interval, per-fold values."""
    per_fold = " ".join(f"{v:.4f}" for v in values)
    return [f"{s['mean']:.4f}", f"{s['std']:.4f}", f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]", per_fold]


def run_cv_command(args: list[str]) -> None:
    """``lit-mc cv --config X --folds K [overrides]``: k-fold cross-validation with error bars."""
    from rich.console import Console
    from rich.table import Table

    from lit_mc.studies import CrossValidation, ResultsStore

    parser = argparse.ArgumentParser(prog="lit-mc cv", description="k-fold cross-validation of one config.")
    parser.add_argument("--config", required=True, help="a `lit-mc fit` config file")
    parser.add_argument("--folds", type=int, default=5, help="number of folds k (default 5)")
    parser.add_argument("--store", default=None, help="results folder (default results/cv/<config name>)")
    opts, overrides = parser.parse_known_args(args)
    if opts.folds < 2:
        raise LitMcError(f"--folds {opts.folds} is too few for cross-validation", "use --folds 2 or more")
    if not Path(opts.config).is_file():
        raise LitMcError(f"config {opts.config} does not exist", "pass the path of a config under configs/")
    store = ResultsStore(opts.store or Path("results") / "cv" / Path(opts.config).stem)
    summary = CrossValidation(opts.config, opts.folds, overrides, store).run()
    table = Table(title=f"{opts.folds}-fold CV of {opts.config} {' '.join(overrides)}")
    for column in ("metric", "mean", "std", "95% CI", "per fold"):
        table.add_column(column)
    for metric, s in summary["summary"].items():
        table.add_row(metric, *_summary_cells(s, [fold[metric] for fold in summary["per_fold"]]))
    Console().print(table)
    print(f"results in {store.root} (wall time of the folds: {summary['wall_s']:.0f} s)")


def run_study_command(args: list[str]) -> None:
    """``lit-mc study run FILE`` trains a study's missing cells; ``lit-mc study report NAME`` shows its results."""
    import json

    from rich.console import Console
    from rich.table import Table

    from lit_mc.studies import ResultsStore, Study, run_study
    from lit_mc.studies.study import write_figures

    parser = argparse.ArgumentParser(prog="lit-mc study", description="Hypothesis studies over a hand-set grid.")
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("study", help="run: a study file; report: a study name or file")
    parser.add_argument("--results", default="results/studies", help="results root (default results/studies)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, in worker processes (default 1)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local", help="local processes or Ray")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    opts = parser.parse_args(args)
    name = Path(opts.study).stem
    store = ResultsStore(Path(opts.results) / name, cells_dir=Path(opts.results) / "cells")
    if opts.action == "run":
        report = run_study(Study.load(opts.study), store, jobs=opts.jobs, executor=opts.executor, address=opts.address)
    else:
        path = store.root / "study.json"
        if not path.is_file():
            raise LitMcError(f"no results for study {name} in {store.root}", f"run `lit-mc study run {opts.study}`")
        report = json.loads(path.read_text())
    table = Table(title=f"{report['name']}: {report['hypothesis']}")
    for column in ("setting", f"{report['metric']} mean", "std", "95% CI", "per fold"):
        table.add_column(column)
    for row in report["rows"]:
        table.add_row(row["label"], *_summary_cells(row["summary"], row["values"]))
    console = Console()
    console.print(table)
    console.print(f"reference: {report['reference']}")
    console.print(f"verdict: {report['verdict']}")
    console.print(f"compute: {report['wall_s']:.0f} s over {len(report['rows'])} settings x {report['folds']} folds")
    for path in write_figures(report, store):
        console.print(f"figure: {path}")


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``argv`` defaults to the command line (LightningCLI reads ``sys.argv`` itself then)."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        if words[:1] == ["data"]:
            run_data_command(words[1:])
        elif words[:1] == ["cv"]:
            run_cv_command(words[1:])
        elif words[:1] == ["study"]:
            run_study_command(words[1:])
        else:
            run_lightning_cli(argv)
    except LitMcError as e:
        print(f"lit-mc: error: {e}", file=sys.stderr)
        sys.exit(ERROR_EXIT)


if __name__ == "__main__":
    main()
