"""``make bench``: every speed benchmark, then one table of ratios against the obvious alternative.

Each benchmark runs in its own process (fresh threads and memory) and writes its JSON under
``benchmarks/results/``; this script then reads those files and prints the table, also written to
``benchmarks/RESULTS.md`` with the machine, versions and date. ``--report`` only redraws the table from the stored
JSON files, without running anything.

    python benchmarks/suite.py [--repeats 3] [--minutes 10] [--skip captioning] [--report]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
Row = tuple[str, str, str, str, str, str]  # what, lit-mc, alternative, ratio, goal, met


def _run(script: str, *args: str) -> None:
    print(f"\n== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], check=True, cwd=REPO)


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _spread(values: list[float], fmt: str = ",.0f") -> str:
    """Median and range of repeated measurements."""
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}}, n={len(values)})"


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def epoch_rows(record: dict) -> list[Row]:
    """Rows 1-3: input pipeline, Lightning overhead, baseline epoch, from ``epoch_speed.json``."""
    cases = {row["case"]: row for row in record["rows"]}

    def median(case: str) -> float:
        return cases[case]["median"]

    rows: list[Row] = []
    lit = "input pipeline, crop+flip: lit-mc batched"
    for workers, case in ((0, "input pipeline, crop+flip: torchvision"),
                          (2, "input pipeline, crop+flip: torchvision workers=2")):  # fmt: skip
        if case in cases:
            ratio = median(lit) / median(case)
            rows.append((f"1. CIFAR-10 input pipeline, crop+flip (images/s), torchvision workers={workers}",
                         _spread(cases[lit]["images_per_s"]), _spread(cases[case]["images_per_s"]),
                         f"{ratio:.1f}x", ">= 10x", _met(ratio >= 10)))  # fmt: skip
    fit, hand = "lit-mc Trainer.fit, channels-last", "hand-written loop, lit-mc batches"
    if pairs := record.get("overhead_pairs"):  # paired short runs: the machine's drift cancels within a pair
        ratios = [p["ratio"] for p in pairs]
        overhead = statistics.median(ratios)
        rows.append((f"2. Lightning overhead: Trainer.fit step time / hand-written loop, {len(pairs)} paired runs "
                     "(median ms per step; ratio: median of the pairs' ratios, range)",
                     _spread([p["fit_ms"] for p in pairs], ".1f"), _spread([p["hand_ms"] for p in pairs], ".1f"),
                     f"{overhead:.3f}x time ({min(ratios):.3f}-{max(ratios):.3f})", "<= 1.05x",
                     _met(overhead <= 1.05)))  # fmt: skip
    elif hand in cases:
        overhead = median(hand) / median(fit)  # time ratio = inverse throughput ratio
        rows.append(("2. Lightning overhead: Trainer.fit epoch time / hand-written loop (images/s)",
                     _spread(cases[fit]["images_per_s"]), _spread(cases[hand]["images_per_s"]),
                     f"{overhead:.3f}x time", "<= 1.05x", _met(overhead <= 1.05)))  # fmt: skip
    tutorial = "tutorial loop, DataLoader workers=0"
    best_tutorial = max((c for c in cases if c.startswith("tutorial loop")), key=median)
    ratio = median(fit) / median(best_tutorial)
    rows.append((f"3. Baseline CNN training epoch (images/s) vs tutorial ({best_tutorial.split(', ', 1)[1]})",
                 _spread(cases[fit]["images_per_s"]), _spread(cases[best_tutorial]["images_per_s"]),
                 f"{ratio:.2f}x", ">= 3x", _met(ratio >= 3)))  # fmt: skip
    if best_tutorial != tutorial:
        ratio0 = median(fit) / median(tutorial)
        rows.append(("3b. ... vs tutorial, DataLoader workers=0", _spread(cases[fit]["images_per_s"]),
                     _spread(cases[tutorial]["images_per_s"]), f"{ratio0:.2f}x", ">= 3x",
                     _met(ratio0 >= 3)))  # fmt: skip
    return rows


def accuracy_rows(record: dict) -> list[Row]:
    """Row 4: wall time to the target test accuracy, and the accuracy within each budget. The goals: 3 minutes
    for the baseline's 65%, 30 for the fastest config's 90% (or more)."""
    seconds = record["seconds_to_target"]
    high = record["target"] >= 0.9
    goal_s = 1800.0 if high else 180.0
    budgets = ", ".join(f"{k}: {v:.1%}" for k, v in record["test_acc_within"].items() if v is not None)
    reached = f"{seconds:.0f} s" if seconds is not None else f"not reached (best {record['best_test_acc']:.1%})"
    config = " ".join([Path(record["config"]).name, *record.get("overrides", [])])
    what = f"{'4b' if high else '4'}. Time to {record['target']:.0%} test accuracy, {config}"
    ok = seconds is not None and seconds <= goal_s
    return [(what, reached, f"within budgets: {budgets}", "-", f"<= {goal_s / 60:.0f} min", _met(ok))]


def captioning_rows(record: dict) -> list[Row]:
    """Row 5: cached features vs encoder in the loop; batched vs single beam search; test evaluation time."""
    rows: list[Row] = []
    for model, r in record["train_steps"].items():
        rows.append((f"5a. {model}: decoder epoch, cached features vs frozen encoder in the loop (s/epoch)",
                     f"{r['epoch_s_cached']:,.0f} s", f"{r['epoch_s_encoder']:,.0f} s", f"{r['ratio']:.1f}x",
                     ">= 10x", _met(r["ratio"] >= 10)))  # fmt: skip
    beam = record["beam5"]
    rows.append(("5b. Beam search k=5 (captions/s), batched vs one image at a time",
                 _spread(beam["batched_captions_per_s"]), _spread(beam["single_captions_per_s"]),
                 f"{beam['ratio']:.1f}x", ">= 5x", _met(beam["ratio"] >= 5)))  # fmt: skip
    test = record["test_evaluation"]
    rows.append((f"5c. Test-split evaluation, {test['images']:,} images, greedy, all metrics",
                 f"{test['seconds']:.0f} s", "-", "-", "<= 60 s", _met(test["seconds"] <= 60)))  # fmt: skip
    return rows


def table(rows: list[Row]) -> str:
    header = ("measurement", "lit-mc", "alternative", "ratio", "goal", "met")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report() -> str:
    import torch

    rows: list[Row] = []
    sources = []
    if (record := _load("epoch_speed.json")) is not None:
        rows += epoch_rows(record)
        sources.append(f"epoch_speed.json ({record['date']}, {record['threads']} threads)")
    records = [json.loads(p.read_text()) | {"file": p.name} for p in RESULTS.glob("time_to_accuracy_*.json")]
    # the baseline config first (the 65% goal is about it), then other configs, then the 90% runs
    records.sort(key=lambda r: (r["target"], Path(r["config"]).stem != "baseline", r["file"]))
    for record in records:
        rows += accuracy_rows(record)
        sources.append(f"{record['file']} ({record['date']}, {record['threads']} thread(s))")
    if (record := _load("captioning_speed.json")) is not None:
        rows += captioning_rows(record)
        sources.append(f"captioning_speed.json ({record['date']})")
    rows.append(("6. Time to accuracy on a GPU", "no GPU lent to this project's sessions so far", "-", "-",
                 "airbench94: 94% in 3.29 s (A100)", "n/a"))  # fmt: skip
    return "\n".join([
        "# Benchmark results",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}, torch {torch.__version__}. Table drawn {datetime.now(UTC):%Y-%m-%d %H:%M} UTC "
        "by `benchmarks/suite.py` (`make bench`; `--report` redraws it) from:",
        "",
        *[f"- `benchmarks/results/{s}`" for s in sources],
        "",
        "Throughputs are medians over the repeats, with their range. Every ratio compares two cases measured in the "
        "same run, one after the other, on real data (CIFAR-10 from `../shared/data`, Flickr8k's 8,091 images).",
        "",
        table(rows),
        "",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0, help="time-to-accuracy run length, baseline config")
    parser.add_argument("--skip", nargs="*", default=[], choices=["epoch", "accuracy", "captioning"])
    parser.add_argument("--ckpt", default=None, help="trained ShowAttendTell checkpoint (default: newest best)")
    parser.add_argument("--report", action="store_true", help="only redraw the table from the stored results")
    opts = parser.parse_args()
    if not opts.report:
        if "epoch" not in opts.skip:
            _run("epoch_speed.py", "--repeats", str(opts.repeats))
        if "accuracy" not in opts.skip:
            _run("time_to_accuracy.py", "--config", "configs/cifar10/baseline.yaml", "--target", "0.65",
                 "--minutes", str(opts.minutes))  # fmt: skip
            _run("time_to_accuracy.py", "--config", "configs/cifar10/fast.yaml", "--target", "0.9", "--minutes", "30")
        if "captioning" not in opts.skip:
            found = sorted(REPO.glob("lightning_logs/flickr8k_show_attend_tell/*/checkpoints/best-*.ckpt"))
            ckpt = opts.ckpt or (str(max(found, key=os.path.getmtime)) if found else None)
            _run("captioning_speed.py", "--repeats", str(opts.repeats), *(["--ckpt", ckpt] if ckpt else []))
    text = report()
    print(text)
    from lit_mc.io import atomic_write_text

    atomic_write_text(REPO / "benchmarks" / "RESULTS.md", text)
    print(f"wrote {REPO / 'benchmarks' / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
