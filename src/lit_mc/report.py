"""What the report notebooks show, as tested functions: stored results in, markdown tables and figures out.

The notebooks only call these; every number they quote is computed here from the results store
(``results/``), the benchmark results (``benchmarks/results/``) and run folders, never typed in.
``LIT_MC_RESULTS`` / ``LIT_MC_BENCH`` point the notebooks at other folders (CI uses small fixture results).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lit_mc.errors import LitMcError

# the shipped studies, in the order the CIFAR-10 report tells them
STUDY_ORDER = (
    "learning_rate", "batch_size", "lr_batch_size", "depth", "width", "kernel_size", "pooling", "dropout",
    "augmentation", "batch_norm", "weight_init", "optimizer", "transfer_learning",
)  # fmt: skip


def results_root() -> Path:
    return Path(os.environ.get("LIT_MC_RESULTS", "results"))


def bench_root() -> Path:
    return Path(os.environ.get("LIT_MC_BENCH", "benchmarks/results"))


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise LitMcError(f"result file {path} does not exist", "run the command that produces it (see README)")
    return json.loads(path.read_text())


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """A figure as PNG bytes (what a notebook embeds; kept small so the committed notebook stays small)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- studies --------------------------------------------------------------------------------------------------
def available_studies(root: Path | None = None) -> list[str]:
    """Shipped studies with results, in report order, then any others."""
    studies = (root or results_root()) / "studies"
    found = {p.parent.name for p in studies.glob("*/study.json")}
    return [s for s in STUDY_ORDER if s in found] + sorted(found - set(STUDY_ORDER))


def load_study(name: str, root: Path | None = None) -> dict[str, Any]:
    return read_json((root or results_root()) / "studies" / name / "study.json")


def study_cells(report: dict[str, Any], root: Path | None = None) -> dict[str, dict]:
    cells = (root or results_root()) / "studies" / "cells"
    return {key: read_json(cells / f"{key}.json") for row in report["rows"] for key in row["cells"]}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def study_markdown(report: dict[str, Any]) -> str:
    """Hypothesis, reference, budget, the metric per setting with its error, and the verdict."""
    rows = []
    for row in report["rows"]:
        s = row["summary"]
        flops = f"{row['flops'] / 1e6:.0f}" if row.get("flops") else "-"
        params = f"{row['params'] / 1e3:.0f}k" if row.get("params") else "-"
        ci = f"[{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]"
        mean = f"{_pct(s['mean'])} ± {_pct(s['std'])}"
        rows.append([row["label"], mean, ci, params, flops, f"{row['wall_s'] / 60:.1f}"])
    table = markdown_table(
        ["setting", f"{report['metric']} % (mean ± std)", "95% CI", "params", "MFLOPs/image", "minutes"], rows
    )
    budget = " ".join(b for b in report["budget"] if "progress_bar" not in b)
    return "\n\n".join([
        f"**Hypothesis.** {report['hypothesis']}",
        f"**Reference.** {report['reference']}",
        f"**Experiment.** {len(report['rows'])} settings x {report['folds']} folds, budget `{budget}`.",
        table,
        f"**Verdict:** {report['verdict']}",
    ])  # fmt: skip


def study_figures(report: dict[str, Any], cells: dict[str, dict]) -> dict[str, Figure]:
    """Learning curves, metric per setting with its CI, and (2-D grids) the heat map."""
    from lit_mc.plots import heatmap_figure, learning_curves_figure, metric_bars_figure

    figures = {
        "learning_curves.png": learning_curves_figure(report["rows"], cells),
        "metric.png": metric_bars_figure(report),
        "heatmap.png": heatmap_figure(report),
    }
    return {name: fig for name, fig in figures.items() if fig is not None}


def compute_table(reports: Sequence[dict[str, Any]]) -> str:
    """Compute spent per study (wall time of its cells on this machine)."""
    rows = [[r["name"], len(r["rows"]), r["folds"], f"{r['wall_s'] / 60:.1f}"] for r in reports]
    total = sum(r["wall_s"] for r in reports) / 60
    return markdown_table(["study", "settings", "folds", "minutes"], rows) + f"\n\nTotal: {total:.0f} minutes."


# -- single runs ----------------------------------------------------------------------------------------------
def run_curves_figure(metrics_csv: Path, label: str) -> Figure:
    """Learning curves of one run from its CSV log."""
    from lit_mc.plots import learning_curves_figure
    from lit_mc.studies.cv import read_curves

    return learning_curves_figure([{"label": label, "cells": ["run"]}], {"run": {"curves": read_curves(metrics_csv)}})


def test_report_markdown(test_metrics: dict[str, Any]) -> str:
    """Test accuracy, macro-F1 and per-class accuracy of a classification run (its ``test_metrics.json``)."""
    m = test_metrics["metrics"]
    per_class = [[name, _pct(m[f"test_acc_{name}"])] for name in test_metrics["class_names"]]
    head = f"Test accuracy **{_pct(m['test_acc'])}%**, macro-F1 {m['test_f1']:.4f}, test loss {m['test_loss']:.4f}."
    return head + "\n\n" + markdown_table(["class", "test accuracy %"], per_class)


def confusion_figure(test_metrics: dict[str, Any]) -> Figure:
    import torch

    from lit_mc.plots import confusion_matrix_figure

    return confusion_matrix_figure(torch.tensor(test_metrics["confusion"]), test_metrics["class_names"])


def cv_markdown(summary: dict[str, Any]) -> str:
    rows = []
    for metric, s in summary["summary"].items():
        per_fold = " ".join(f"{fold[metric]:.4f}" for fold in summary["per_fold"])
        rows.append(
            [metric, f"{s['mean']:.4f}", f"{s['std']:.4f}", f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]", per_fold]
        )
    return markdown_table(["metric", "mean", "std", "95% CI", "per fold"], rows)


def overfit_markdown(results: list[dict[str, Any]]) -> str:
    rows = [[r["config"], r["first_loss"] and f"{r['first_loss']:.3f}", f"{r['final_loss']:.4f}",
             r["step_acc_100"], r["step_loss_below_0.05"] or f"not within {r['steps']}"] for r in results]  # fmt: skip
    return markdown_table(
        ["config", "first loss", "final loss", "100% batch accuracy at step", "loss < 0.05 at step"], rows
    )
