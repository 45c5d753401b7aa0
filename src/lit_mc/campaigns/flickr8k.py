"""The Flickr8k campaign of ``configs/flickr8k/README.md`` as one resumable command, two runs at a time.

    python -m lit_mc.campaigns.flickr8k [--jobs 2] [--stop-at 21:10] [--only recipe,xe] [--dry-run]

Every run is a ``lit-mc fit`` in its own process (one thread) with a named run folder
(``lightning_logs/flickr8k_<tag>/``); a run killed by the end of a session continues from its ``last.ckpt`` the next
time. What counts as done is what is committed: a recipe row's ``results/flickr8k/recipe/<tag>.json`` (its
validation CIDEr per epoch) and a seed's ``results/flickr8k/<model>/seed<S>/`` (``caption_runs --choose-decoding``),
so a new machine with only the repository goes on where the last one stopped.

The transformer's recipe is a greedy search on validation CIDEr, one change at a time: r1 / r2 try warm-up with
inverse-sqrt or cosine decay (dropout 0.3, label smoothing 0.1, weight decay 0.01) against the shipped r0; r3-r7
each change one setting of the best row so far (dropout 0.1, peak learning rate 8e-4 instead of 4e-4, no label
smoothing, no weight decay, width 512 / 3 layers). The best of r0-r6 is the recipe the transformer's seeds train
with, for the recipe's 8 epochs; r7, the size row, is not waited for (about five times a row's compute, more than a
session gives one thread), so the seeds keep 256 / 2 and r7 is reported against r0-r6 when it has run.
``--stop-at`` starts no run after that clock time (the runs in flight finish), so a session ends with finished runs,
not lost ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_mc.clock import stop_time
from lit_mc.errors import LitMcError
from lit_mc.io import atomic_write_text

MODELS = ("show_and_tell", "show_attend_tell", "transformer")
SEEDS = (0, 1, 2)
RECIPE_EPOCHS = 8
TRIAL = {"warmup_steps": 500, "dropout": 0.3, "label_smoothing": 0.1, "weight_decay": 0.01}
FIRST_ROWS = {"r0": {}, "r1": {**TRIAL, "schedule": "inverse_sqrt"}, "r2": {**TRIAL, "schedule": "cosine"}}
CHANGES = (  # each tried on the best row so far
    ("r3", {"dropout": 0.1}),
    ("r4", {"lr": 0.0008}),  # warm-up allows a larger peak rate; the decaying schedules average below r0's constant
    ("r5", {"label_smoothing": 0.0}),
    ("r6", {"weight_decay": 0.0}),
    ("r7", {"d_model": 512, "layers": 3, "ff_dim": 2048, "heads": 8}),
)
SIZE_ROWS = ("r7",)  # run after the seeds, as a check: the seeds do not wait for them


def seed_recipe_tags() -> list[str]:
    """The recipe rows whose best gives the transformer's seeds their settings (every row but the size rows)."""
    return [t for t in [*FIRST_ROWS, *(t for t, _ in CHANGES)] if t not in SIZE_ROWS]


@dataclass
class Campaign:
    """Where the campaign reads and writes: the repository's configs, results and run folders."""

    repo: Path = Path(".")
    results: Path = Path("results/flickr8k")
    logs: Path = Path("lightning_logs")
    data: Path = Path("data/flickr8k")
    scst_from: dict[str, int] = field(default_factory=dict)  # model -> the seed SCST starts from, if not the best

    def config(self, model: str) -> Path:
        return self.repo / "configs" / "flickr8k" / f"{model}.yaml"

    def recipe_file(self, tag: str) -> Path:
        return self.results / "recipe" / f"{tag}.json"

    def recipe_rows(self) -> dict[str, dict[str, Any]]:
        """The finished recipe rows: ``tag -> {"overrides", "val_cider", "best_val_cider", ...}``."""
        from lit_mc.report.captioning import recipe_rows

        return recipe_rows(self.results.parent)

    def run_root(self, tag: str) -> Path:
        return self.logs / f"flickr8k_{tag}"

    def run_folder(self, tag: str) -> Path | None:
        """The newest version of the tag's run that has a ``last.ckpt``, if any."""
        found = sorted(self.run_root(tag).glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        return found[-1].parents[1] if found else None


def next_recipe_row(rows: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The next row of the greedy recipe search given the finished ``rows``: the first rows while any is missing,
    then each change on the best row so far (r0, the shipped recipe, is a reference and not built upon); None when
    every row has run."""
    for tag, overrides in FIRST_ROWS.items():
        if tag not in rows:
            return tag, dict(overrides)
    for tag, change in CHANGES:
        if tag not in rows:
            base = best_recipe_row({t: r for t, r in rows.items() if t != "r0"})
            return tag, {**rows[base]["overrides"], **change}
    return None


def best_recipe_row(rows: dict[str, dict[str, Any]]) -> str:
    """The tag of the row with the highest best-epoch validation CIDEr (the first row on a tie)."""
    return max(rows, key=lambda t: rows[t]["best_val_cider"])


def _model_args(overrides: dict[str, Any]) -> list[str]:
    return [f"--model.init_args.{k}={v}" for k, v in overrides.items()]


def fit_command(camp: Campaign, model: str, tag: str, extra: list[str]) -> list[str]:
    """``lit-mc fit`` of ``model``'s config into ``lightning_logs/flickr8k_<tag>``, continuing its ``last.ckpt``
    when an earlier session left one."""
    args = [sys.executable, "-m", "lit_mc.cli", "fit", "--config", str(camp.config(model)), *extra,
            f"--trainer.logger.init_args.save_dir={camp.logs}", f"--trainer.logger.init_args.name=flickr8k_{tag}",
            "--trainer.enable_progress_bar=false"]  # fmt: skip
    if camp.run_folder(tag) is not None:
        args.append("--ckpt_path=last")
    return args


def recipe_run_tag(tag: str) -> str:
    """The run folder's tag of recipe row ``tag``: ``lightning_logs/flickr8k_transformer_<tag>``."""
    return f"transformer_{tag}"


def summarise_recipe_run(camp: Campaign, tag: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``results/flickr8k/recipe/<tag>.json``: the row's settings and its validation curve (what the search and
    the notebook read; the run folder itself is not committed)."""
    from lit_mc.runs import read_metrics_csv

    run = camp.run_folder(recipe_run_tag(tag))
    if run is None:
        raise LitMcError(f"recipe row {tag} left no checkpoint in {camp.run_root(recipe_run_tag(tag))}",
                         "see its log in lightning_logs/flickr8k_campaign/ and run it again")  # fmt: skip
    rows = read_metrics_csv(run / "metrics.csv")
    curve = [{"epoch": int(r["epoch"]) + 1, "val_cider": r["val_cider"], "val_loss": r.get("val_loss")}
             for r in rows if "val_cider" in r]  # fmt: skip
    if not curve:
        raise LitMcError(f"recipe row {tag} logged no val_cider in {run / 'metrics.csv'}", "run it again")
    best = max(curve, key=lambda c: c["val_cider"])
    summary = {"tag": tag, "overrides": overrides, "epochs": RECIPE_EPOCHS, "curve": curve, "run": str(run),
               "best_val_cider": best["val_cider"], "best_epoch": best["epoch"]}  # fmt: skip
    path = camp.recipe_file(tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(summary, indent=1))
    return summary


@dataclass
class Job:
    """One run of the campaign: a command, how to tell it is done, what must be done first, what to do after."""

    name: str
    command: Callable[[], list[list[str]]]  # built when the job starts: it may read results of earlier jobs
    done: Callable[[], bool]
    needs: tuple[str, ...] = ()
    after: Callable[[], Any] | None = None
    group: str = ""
    tag: str = ""  # the fit's run tag: lightning_logs/flickr8k_<tag>


def recipe_jobs(camp: Campaign) -> list[Job]:
    """The seven recipe rows as jobs, each row's settings resolved from the rows finished before it starts."""
    jobs = []
    order = [*FIRST_ROWS, *(tag for tag, _ in CHANGES)]
    for i, tag in enumerate(order):
        needs = tuple(f"recipe {t}" for t in order[1:i]) if i >= len(FIRST_ROWS) else ()  # r3..: all earlier but r0

        def command(tag: str = tag) -> list[list[str]]:
            if tag in FIRST_ROWS:
                overrides = dict(FIRST_ROWS[tag])
            else:  # every earlier row has run (the job's needs): the search says what this row changes
                row = next_recipe_row({t: r for t, r in camp.recipe_rows().items() if t != tag})
                assert row is not None and row[0] == tag, (row, tag)
                overrides = row[1]
            _pending[tag] = overrides
            extra = [*_model_args(overrides), f"--trainer.max_epochs={RECIPE_EPOCHS}", "--test_after_fit=false"]
            return [fit_command(camp, "transformer", recipe_run_tag(tag), extra)]

        def after(tag: str = tag) -> None:
            summarise_recipe_run(camp, tag, _pending.pop(tag))

        jobs.append(Job(f"recipe {tag}", command, lambda tag=tag: camp.recipe_file(tag).is_file(), needs, after,
                        "recipe", recipe_run_tag(tag)))  # fmt: skip
    return jobs


_pending: dict[str, dict[str, Any]] = {}  # a recipe row's settings between its start and its summary


def seed_jobs(camp: Campaign, model: str) -> list[Job]:
    """Cross-entropy training of ``model`` with each seed, then decoding chosen on validation and the analysis."""
    jobs = []
    for seed in SEEDS:
        tag = f"{model}_s{seed}"
        out = camp.results / model / f"seed{seed}"

        def command(model: str = model, seed: int = seed, tag: str = tag) -> list[list[str]]:
            extra = [f"--seed_everything={seed}", f"--data.init_args.seed={seed}"]
            if model == "transformer":  # the recipe includes its budget: the cosine schedule spans 8 epochs
                extra.append(f"--trainer.max_epochs={RECIPE_EPOCHS}")
            fit = fit_command(camp, model, tag, [*_recipe_overrides(camp, model), *extra])
            analyse = [sys.executable, "-m", "lit_mc.report.caption_runs", RUN, "--choose-decoding", "--name",
                       f"{model}/seed{seed}", "--data", str(camp.data), "--out", str(camp.results)]  # fmt: skip
            return [fit, analyse]

        needs = tuple(f"recipe {t}" for t in seed_recipe_tags()) if model == "transformer" else ()
        jobs.append(Job(f"{model} seed {seed}", command, lambda out=out: (out / "examples.json").is_file(), needs,
                        group=f"xe {model}", tag=tag))  # fmt: skip
    return jobs


def _recipe_overrides(camp: Campaign, model: str) -> list[str]:
    """The transformer's recipe winner as ``--model.init_args.*`` (nothing for the other models)."""
    if model != "transformer":
        return []
    rows = {t: r for t, r in camp.recipe_rows().items() if t in seed_recipe_tags()}
    return _model_args(rows[best_recipe_row(rows)]["overrides"])


def best_seed(camp: Campaign, model: str) -> int:
    """The seed whose run reached the highest validation CIDEr (from the analysed runs' copied metrics logs)."""
    from lit_mc.report.captioning import best_validation_seed

    return int(best_validation_seed(model, camp.results.parent).removeprefix(f"{model}/seed"))


def scst_job(camp: Campaign, model: str) -> Job:
    """Self-critical fine-tuning from the best seed's best checkpoint (by validation CIDEr; ``camp.scst_from`` names
    another seed, e.g. when the best seed's run is on another machine), then decoding on validation and analysis.
    The SCST run's config records the checkpoint it started from, and the report compares it with that seed."""
    out = camp.results / f"{model}_scst"

    def command() -> list[list[str]]:
        from lit_mc.report.caption_runs import best_checkpoint

        seed = camp.scst_from[model] if model in camp.scst_from else best_seed(camp, model)
        run = camp.run_folder(f"{model}_s{seed}")
        if run is None:
            again = camp.results / model / f"seed{seed}"
            raise LitMcError(f"the run of {model} seed {seed} is not on this machine (checkpoints are not committed)",
                             f"train it again (delete {again} and run the campaign), or start from a seed whose run "
                             f"is here: --scst-from {model}=S")  # fmt: skip
        # the recipe first, the SCST overlay after it: SCST's own rate, schedule and loss replace the recipe's (the
        # architecture and dropout stay the checkpoint's recipe)
        extra = [*_recipe_overrides(camp, model), "--config", str(camp.config("scst")),
                 f"--model.init_args.init_from={best_checkpoint(run)}"]  # fmt: skip
        analyse = [sys.executable, "-m", "lit_mc.report.caption_runs", RUN, "--choose-decoding", "--name",
                   f"{model}_scst", "--data", str(camp.data), "--out", str(camp.results)]  # fmt: skip
        return [fit_command(camp, model, f"{model}_scst", extra), analyse]

    needs = tuple(f"{model} seed {s}" for s in SEEDS)
    return Job(f"{model} scst", command, lambda: (out / "examples.json").is_file(), needs, group="scst",
               tag=f"{model}_scst")  # fmt: skip


def prefix_lm_job(camp: Campaign) -> Job:
    """The prefix-LM captioner (SmolLM2-135M frozen), sized to one thread of a 3-hour session (configs/flickr8k/
    README.md, its measured cost): 2 epochs of 188 batches of 32 (about one caption per training image an epoch,
    the budget issue #18 names), the best epoch chosen on the first 250 validation images (the LM's loss over their
    five references at batch 25 is most of a validation's cost); then beam 1 and beam 3 with length penalty 0 or 1
    chosen on all 1,000 validation images, and the test split decoded once with the choice."""
    out = camp.results / "prefix_lm"

    def command() -> list[list[str]]:
        fetch = [sys.executable, "-m", "lit_mc.cli", "data", "smollm2"]
        extra = ["--trainer.limit_train_batches=188", "--trainer.max_epochs=2", "--data.init_args.eval_batch_size=25",
                 "--data.init_args.val_images=250", "--test_after_fit=false"]  # fmt: skip
        analyse = [sys.executable, "-m", "lit_mc.report.caption_runs", RUN, "--choose-decoding", "--beams", "1,3",
                   "--penalties", "0,1", "--name", "prefix_lm", "--data", str(camp.data),
                   "--out", str(camp.results)]  # fmt: skip
        return [fetch, fit_command(camp, "prefix_lm", "prefix_lm", extra), analyse]

    return Job("prefix_lm", command, lambda: (out / "examples.json").is_file(), group="prefix", tag="prefix_lm")


def all_jobs(camp: Campaign) -> list[Job]:
    """In priority order: the recipe chain first (it gates the transformer's seeds), the seeds, SCST from each
    model's best seed, the prefix LM, and last the size row of the recipe (a check the seeds do not wait for)."""
    recipe = recipe_jobs(camp)
    size = [j for j in recipe if j.name.split(" ")[1] in SIZE_ROWS]
    return [*(j for j in recipe if j not in size), *seed_jobs(camp, "show_and_tell"), *seed_jobs(camp, "transformer"),
            *seed_jobs(camp, "show_attend_tell"), *(scst_job(camp, m) for m in MODELS), prefix_lm_job(camp),
            *size]  # fmt: skip


RUN = "{run}"  # in a job's later command: the run folder its fit wrote


class _Steps(threading.Thread):
    """A job's commands one after another (each a child process, one thread), stopping at the first failure."""

    def __init__(self, job: Job, camp: Campaign, log: Path) -> None:
        super().__init__(daemon=True)
        self.job, self.camp, self.log, self.returncode = job, camp, log, None

    def run(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        code = 0
        with self.log.open("a") as out:
            try:
                commands = self.job.command()
            except LitMcError as e:  # e.g. a checkpoint this job starts from is not on this machine
                out.write(f"\n# {self.job.name}: cannot start: {e}\n")
                self.returncode = 1
                return
            for command in commands:
                if RUN in command:
                    folder = self.camp.run_folder(self.job.tag)
                    command = [str(folder) if a == RUN else a for a in command]
                out.write(f"\n# {dt.datetime.now():%Y-%m-%d %H:%M} {self.job.name}: {' '.join(command)}\n")
                out.flush()
                code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, env=env)
                if code:
                    break
        self.returncode = code


def run(camp: Campaign, jobs: list[Job], workers: int, stop_at: dt.datetime | None, logs: Path) -> list[str]:
    """Run the jobs that are not done, ``workers`` at a time, each once its ``needs`` are done; none is started
    after ``stop_at``. Returns what happened to each job, in the order they ended."""
    status = {j.name: "done" for j in jobs if j.done()}
    running: dict[str, _Steps] = {}
    report = [f"{name}: done before" for name in status]
    while True:
        for name, steps in list(running.items()):
            if steps.is_alive():
                continue
            del running[name]
            job = steps.job
            _lock_file(logs, job).unlink(missing_ok=True)
            if steps.returncode == 0 and job.after is not None:
                job.after()
            ok = steps.returncode == 0 and job.done()
            status[name] = "done" if ok else "failed"
            report.append(f"{name}: " + ("done" if ok else f"failed (exit {steps.returncode}, log {steps.log})"))
            print(report[-1], flush=True)
        late = stop_at is not None and dt.datetime.now() >= stop_at
        ready = [j for j in jobs if j.name not in status and j.name not in running
                 and all(status.get(n) == "done" for n in j.needs)]  # fmt: skip
        while ready and len(running) < workers and not late:
            job = ready.pop(0)
            other = _take_lock(logs, job)
            if other is not None:  # a second campaign process runs it: its folder is not shared
                status[job.name] = "elsewhere"
                report.append(f"{job.name}: not started (running in campaign process {other})")
                print(report[-1], flush=True)
                continue
            steps = _Steps(job, camp, logs / f"{job.name.replace(' ', '_')}.log")
            running[job.name] = steps
            steps.start()
            print(f"{job.name}: started ({steps.log})", flush=True)
        if not running:
            report += [f"{j.name}: not started (" + ("--stop-at" if late else _unmet(j, status)) + ")"
                       for j in jobs if j.name not in status]  # fmt: skip
            return report
        time.sleep(5)


def _lock_file(logs: Path, job: Job) -> Path:
    return logs / f"{job.name.replace(' ', '_')}.lock"


def _take_lock(logs: Path, job: Job) -> int | None:
    """Claim ``job`` for this process (its lock file holds our pid); the pid of the live campaign process that holds
    it instead, if any. A lock left by a process that has ended is taken over."""
    lock = _lock_file(logs, job)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:  # alive, another user's
                pass
            return pid if pid != os.getpid() else None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return None
    return None


def _unmet(job: Job, status: dict[str, str]) -> str:
    """Why a job's needs are not met: which failed, and which are not in this campaign (left out by ``--only``)."""
    failed = [n for n in job.needs if status.get(n) == "failed"]
    missing = [n for n in job.needs if n not in status]
    elsewhere = [n for n in job.needs if status.get(n) == "elsewhere"]
    return "; ".join([*([f"needs failed {', '.join(failed)}"] if failed else []),
                      *([f"needs {', '.join(elsewhere)}: running in another campaign process"] if elsewhere else []),
                      *([f"needs {', '.join(missing)}: not done and not selected"] if missing else [])])  # fmt: skip


def select_jobs(jobs: list[Job], only: str | None) -> list[Job]:
    """The jobs of the ``--only`` groups (all when None), plus every job already done: a selected job's needs
    that earlier sessions finished count as met even when their group is not selected."""
    if not only:
        return jobs
    groups = set(only.split(","))
    return [j for j in jobs if j.group in groups or j.group.split(" ")[0] in groups or j.done()]


def scst_seeds(words: list[str]) -> dict[str, int]:
    """``--scst-from MODEL=SEED`` words as ``{model: seed}``, each checked against the campaign's models and seeds."""
    chosen = {}
    for word in words:
        model, _, seed = word.partition("=")
        if model not in MODELS or seed not in {str(s) for s in SEEDS}:
            raise LitMcError(f"--scst-from {word} names no model and seed of the campaign",
                             f"use MODEL=SEED with MODEL one of {', '.join(MODELS)} and SEED one of "
                             f"{', '.join(map(str, SEEDS))}")  # fmt: skip
        chosen[model] = int(seed)
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--stop-at", help="HH:MM: start no run after the next such time (runs in flight finish)")
    parser.add_argument("--only", help="comma-separated groups: recipe, xe, scst, prefix (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    parser.add_argument("--scst-from", action="append", default=[], metavar="MODEL=SEED",
                        help="start MODEL's SCST from this seed instead of its best by validation CIDEr")  # fmt: skip
    opts = parser.parse_args(argv)
    try:
        camp = Campaign(scst_from=scst_seeds(opts.scst_from))
        stop = stop_time(opts.stop_at) if opts.stop_at else None
    except LitMcError as e:  # one line and exit 2, as every lit-mc command
        parser.exit(2, f"lit-mc: error: {e}\n")
    jobs = all_jobs(camp)
    jobs = select_jobs(jobs, opts.only)
    if opts.dry_run:
        for j in jobs:
            print(
                f"{j.name}: {'done' if j.done() else 'to run'}" + (f" (after {', '.join(j.needs)})" if j.needs else "")
            )
        return
    for line in run(camp, jobs, opts.jobs, stop, camp.logs / "flickr8k_campaign"):
        print(line)


if __name__ == "__main__":
    main()
