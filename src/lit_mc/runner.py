"""LitMcCLI: LightningCLI with the guarantees every lit-mc run has, built only on LightningCLI's public hooks.

- every run owns its folder (claimed atomically, whatever the logger; see :mod:`lit_mc.runs`);
- ``--ckpt_path last`` continues (fit) or scores (validate/test/predict) the newest run of the same model and
  data, and is an error when there is none;
- a checkpoint whose model differs from the configured one is refused (Lightning would swap the model silently);
- checkpoints are written atomically beside their destination, ``last.ckpt`` after every epoch, and the RNG is
  re-seeded per epoch so that a resumed run is bit-identical;
- a run that stops on bad input leaves no run folder behind.
"""

from __future__ import annotations

import argparse
import copy
import netrc
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from lit_mc.callbacks import EpochSeed, LastCheckpoint, ReportFiles
from lit_mc.checkpoints import (
    AtomicCheckpointIO,
    check_checkpoint,
    checkpoint_epoch,
    evaluation_settings,
    model_and_data_args,
    refuse_other_model,
)
from lit_mc.errors import LitMcError
from lit_mc.runs import check_writable, claim_logger_folders, file_logger_root, read_metrics_csv, release_if_unused
from lit_mc.settings import same_settings

FIX_CONFIG = "check the option names and types with `lit-mc SUBCOMMAND --help` or `--print_config`"


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


_USER_WANDB_DATA_DIR = "WANDB_DATA_DIR" in os.environ


def _prepare_wandb(trainer: Namespace, run_dirs: list[Path]) -> None:
    """Before a run with a W&B logger: a W&B run still open in this process (an earlier in-process run's) is
    finished, else the new logger would log into it and its folder; and W&B stages the pictures of a logged table
    under ``WANDB_DATA_DIR`` (``~/.local/share/wandb``) until the run is synced, so that goes in the run's folder
    (unless the user chose one): an offline run is whole where it was written."""
    loggers = trainer.get("logger")
    names = [str(lg.get("class_path", "")) for lg in (loggers if isinstance(loggers, list) else [loggers])
             if isinstance(lg, Namespace | dict)]  # fmt: skip
    if not any(name.endswith("WandbLogger") for name in names):
        return
    if "wandb" in sys.modules and sys.modules["wandb"].run is not None:
        sys.modules["wandb"].finish()
    if not _USER_WANDB_DATA_DIR and run_dirs:
        os.environ["WANDB_DATA_DIR"] = str(run_dirs[0].resolve() / "wandb")


def _logger_root(section: Namespace) -> Path:
    """The folder whose ``version_*`` runs ``--ckpt_path last`` looks through."""
    logger = section.trainer.get("logger")
    init = logger.get("init_args") if isinstance(logger, Namespace | dict) else None
    if init is None:
        raise LitMcError("--ckpt_path last needs a file logger to find earlier runs", "pass the checkpoint's path")
    return file_logger_root(init)


def find_last_run(section: Namespace) -> Path:
    """The newest ``last.ckpt`` under the logger's folder whose run has the same ``model`` and ``data`` settings.

    Lightning's own ``"last"`` only looks inside the folder of the *new* run, which a fresh process has just made
    empty (so ``test --ckpt_path last`` would score an untrained network).
    """
    root = _logger_root(section)
    wanted = {"model": section.model.as_dict(), "data": section.data.as_dict()}
    candidates = sorted(root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for ckpt in candidates:
        saved_config = ckpt.parent.parent / "config.yaml"
        saved = yaml.safe_load(saved_config.read_text()) if saved_config.is_file() else {}
        if all(same_settings((saved or {}).get(k), v) for k, v in wanted.items()):
            return ckpt
    raise LitMcError(
        f"no run of this model and data with a last.ckpt under {root}",
        "start without --ckpt_path, or pass the checkpoint's path",
    )


def check_trainer_values(trainer: Namespace) -> None:
    """Values that Lightning would accept and turn into a meaningless run."""
    epochs = trainer.get("max_epochs")
    if epochs is not None and (epochs == 0 or epochs < -1):
        raise LitMcError(
            f"--trainer.max_epochs={epochs} trains nothing",
            "use 1 or more (or -1 for no limit); to score a checkpoint use `lit-mc test --ckpt_path FILE`",
        )


class RunFolderConfig(SaveConfigCallback):
    """The resolved config, saved as ``config.yaml`` in the run's folder. A run without a logger has no folder, and
    Lightning would then write into the working directory (an analysis that decodes with ``--trainer.logger=false``
    left a ``config.yaml`` at the repository's root, and two such runs would write the same file): nothing then."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.logger is not None:
            super().setup(trainer, pl_module, stage)


class LitMcCLI(LightningCLI):
    """LightningCLI plus ``--test_after_fit``, a rich progress bar, run-folder claims and checkpoint checks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=False, help="after fit, test the best checkpoint")

    def _section(self) -> Namespace:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then settle ``--ckpt_path`` before Lightning reads the checkpoint's hyperparameters into the
        config (which would silently replace the configured model)."""
        super().parse_arguments(parser, args)
        self.kept_metrics: list[dict[str, float]] = []
        section, subcommand = self._section(), self.config.get("subcommand")
        if subcommand in (None, "fit"):
            check_trainer_values(section.trainer)
        if section.get("ckpt_path") == "last":
            ckpt = find_last_run(section)
            section.ckpt_path = str(ckpt)
            if subcommand == "fit":  # continue in the run's own folder, with its logged rows up to the ckpt
                check_writable(ckpt.parent.parent)
                check_writable(ckpt.parent)
                section.trainer.logger.init_args["version"] = ckpt.parent.parent.name
                self.kept_metrics = metrics_up_to(ckpt.parent.parent / "metrics.csv", checkpoint_epoch(ckpt))
            print(f"lit-mc: {'resuming' if subcommand == 'fit' else 'using'} {ckpt}")
        self.evaluation_overrides: dict[str, Any] = {}
        if section.get("ckpt_path") and Path(section.ckpt_path).is_file():
            model = section.model.as_dict()
            may_differ = () if subcommand == "fit" else evaluation_settings(str(model.get("class_path") or ""))
            refuse_other_model(section.ckpt_path, model, may_differ)
            # Lightning next reads the checkpoint's hyperparameters into the config: these come back as given
            init_args = model.get("init_args") or {}
            self.evaluation_overrides = {key: init_args[key] for key in may_differ if key in init_args}

    def before_instantiate_classes(self) -> None:
        _BUILDING.append(self)
        for key, value in self.evaluation_overrides.items():  # decoding given for this evaluation, not the ckpt's
            self._section().model.init_args[key] = value
        trainer = self._section().trainer
        self._configured_logger = copy.deepcopy(trainer.get("logger"))
        self.run_dirs: list[Path] = claim_logger_folders(trainer)
        _prepare_wandb(trainer, self.run_dirs)

    def after_instantiate_classes(self) -> None:
        """The loggers now hold their claimed folders; the config (saved as the run's ``config.yaml``) gets the
        configured logger back, so that re-running a saved config starts a new run instead of overwriting this one."""
        self._section().trainer.logger = self._configured_logger

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The configured trainer, plus the callbacks and the checkpoint writer that every lit-mc run has."""
        config = self._section().trainer
        init = self.config_init[self.subcommand] if self.subcommand else self.config_init
        callbacks = list(init.trainer.get("callbacks") or [])
        if config.get("enable_progress_bar") is not False:
            callbacks.append(RichProgressBar(leave=True))
        if config.get("enable_checkpointing") is not False:
            callbacks.append(LastCheckpoint())
        callbacks.append(ReportFiles())
        seed = self._section().get("seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool):
            callbacks.append(EpochSeed(seed))
        plugins = init.trainer.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(callbacks=callbacks, plugins=plugins, **kwargs)

    def before_fit(self) -> None:
        restore_metrics(self.trainer, self.kept_metrics)

    def after_fit(self) -> None:
        if self.config.fit.get("test_after_fit"):
            has_best = bool(getattr(self.trainer.checkpoint_callback, "best_model_path", ""))
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if has_best else None)

    def release_unused_run_dirs(self) -> None:
        """Remove the run folders this CLI claimed and no run used (a cached cell, a failed start)."""
        for folder in getattr(self, "run_dirs", []):
            release_if_unused(folder)


def metrics_up_to(metrics_csv: Path, last_epoch: int) -> list[dict[str, float]]:
    """The logged rows of epochs 0..last_epoch: what the resumed run keeps (later rows are redone)."""
    return [row for row in read_metrics_csv(metrics_csv) if row.get("epoch", float("inf")) <= last_epoch]


def restore_metrics(trainer: L.Trainer, rows: list[dict[str, float]]) -> None:
    """Log the kept rows again: the CSV logger empties ``metrics.csv`` when it opens a run folder again."""
    from lightning.pytorch.loggers import CSVLogger

    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            for row in rows:
                metrics = {k: v for k, v in row.items() if k != "step"}
                logger.log_metrics(metrics, step=int(row.get("step", 0)))


_SPECIAL = {"nan": ".nan", "inf": ".inf", "+inf": ".inf", "-inf": "-.inf", "infinity": ".inf"}


def _yaml_special(word: str) -> str:
    """``--x=nan`` / ``--x=inf`` as YAML's ``.nan`` / ``.inf``, so the value reaches the option's range check."""
    key, sep, value = word.partition("=")
    return f"{key}={_SPECIAL[value.lower()]}" if sep and key.startswith("--") and value.lower() in _SPECIAL else word


def check_config_files(words: list[str]) -> None:
    """An empty or non-mapping config file is named here; jsonargparse would only say "Unexpected config"."""
    for i, word in enumerate(words):
        path = word.split("=", 1)[1] if word.startswith("--config=") else None
        if word in ("--config", "-c") and i + 1 < len(words):
            path = words[i + 1]
        if path is None or not Path(path).is_file():
            continue
        try:
            content = yaml.safe_load(Path(path).read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise LitMcError(f"config {path} is not valid YAML ({type(e).__name__})", "fix the file's syntax") from None
        if not isinstance(content, dict):
            what = "empty" if content is None else f"a {type(content).__name__}, not a mapping of options"
            raise LitMcError(f"config {path} is {what}", "write options such as `trainer:`, `model:`, `data:` in it")


def _ckpt_path_argument(args: list[str]) -> str | None:
    for i, word in enumerate(args):
        if word.startswith("--ckpt_path="):
            return word.split("=", 1)[1]
        if word == "--ckpt_path" and i + 1 < len(args):
            return args[i + 1]
    return None


def _lit_mc_error_in(error: BaseException) -> LitMcError | None:
    """The :class:`LitMcError` that caused ``error``, if any (the first one in its chain of causes)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, LitMcError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


_BUILDING: list[LitMcCLI] = []  # CLIs whose construction (which runs the subcommand) has started, newest last


def run_lightning_cli(args: list[str] | None = None, run: bool = True) -> LitMcCLI:
    """``lit-mc fit|validate|test|predict``: any LightningModule and LightningDataModule, chosen in config.

    With ``run=False`` the arguments carry no subcommand and the CLI only builds trainer, model and data.
    """
    words = sys.argv[1:] if args is None else args
    check_config_files(words)
    if any(_yaml_special(w) != w for w in words):  # `lr=nan` is a string to YAML; `.nan` is the number
        words = args = [_yaml_special(w) for w in words]
    if (ckpt := _ckpt_path_argument(words)) is not None:
        check_checkpoint(ckpt)
        # without a config or a whole --model/--data, both come from the checkpoint; options such as
        # --data.data_dir then apply on top of them
        whole = ("--config", "-c", "--model=", "--data=")
        given = any(w.startswith(whole) or w in ("--model", "--data") for w in words)
        if run and not given and ckpt == "last":
            raise LitMcError("--ckpt_path last needs the run's config to find it", "add --config FILE of the run")
        if run and not given:
            args = [words[0], *model_and_data_args(ckpt), *words[1:]]
    _wandb_offline_unless_configured()
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")  # args built above
    started = len(_BUILDING)
    try:
        return LitMcCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            parser_kwargs={"exit_on_error": False},  # parse errors raise, and become one line in the CLI
            trainer_defaults={
                "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "."}},
            },
            save_config_callback=RunFolderConfig,
            save_config_kwargs={"overwrite": True},
        )
    except argparse.ArgumentError as e:
        raise LitMcError(condense_parser_error(str(e)), FIX_CONFIG) from None
    except BaseException as e:
        for cli in _BUILDING[started:]:
            cli.release_unused_run_dirs()
        if (ours := _lit_mc_error_in(e)) is not None and ours is not e:
            raise ours from None  # jsonargparse wraps the errors that classes raise while it instantiates them
        raise
    finally:
        del _BUILDING[started:]
