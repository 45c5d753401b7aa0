"""What the report notebooks show, as tested functions: stored results in, markdown tables and figures out.

The notebooks only call these; every number they quote is computed here from the results store
(``results/``), the benchmark results (``benchmarks/results/``) and run folders, never typed in.
``LIT_MC_RESULTS`` / ``LIT_MC_BENCH`` point the notebooks at other folders (CI uses small fixture results).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from lit_mc.errors import LitMcError
from lit_mc.io import atomic_save_figure

if TYPE_CHECKING:
    from lit_mc.studies.store import ResultsStore

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
    parts = [
        f"**Hypothesis.** {report['hypothesis']}",
        f"**Reference.** {report['reference']}",
        f"**Experiment.** {len(report['rows'])} settings x {report['folds']} folds, budget `{budget}`.",
        table,
    ]
    if "claims" not in report:  # a report from before claims: its one verdict line
        return "\n\n".join([*parts, f"**Verdict:** {report['verdict']}"])
    parts += [claims_markdown(report)]
    if math.isfinite(report.get("mde", math.nan)):
        parts.append(f"Minimum detectable effect at this budget: {100 * report['mde']:.1f} points "
                     f"({report['mde_note']}).")  # fmt: skip
    return "\n\n".join(parts)


def claims_markdown(report: dict[str, Any]) -> str:
    """One line per claim: its verdict in words with the numbers it rests on."""
    return "\n".join(f"- **{c['claim']}** — {c['verdict_text']}" for c in report["claims"])


def study_console_tables(report: dict[str, Any]) -> list[Any]:
    """What ``lit-mc study run|report`` prints: the settings table, then each claim's verdict."""
    from rich.table import Table

    table = Table(title=f"{report['name']}: {report['hypothesis']}")
    for column in ("setting", f"{report['metric']} mean", "std", "95% CI", "per fold", "params", "MFLOPs", "min"):
        table.add_column(column)
    for row in report["rows"]:
        s = row["summary"]
        cells = [f"{s['mean']:.4f}", f"{s['std']:.4f}", f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]",
                 " ".join(f"{v:.4f}" for v in row["values"])]  # fmt: skip
        label = row["label"] + (" (diverged)" if row.get("diverged") else "")
        if row.get("run_setting") not in (None, row["setting"]):
            label += f" -> {', '.join(f'{k.split(chr(46))[-1]}={v}' for k, v in row['run_setting'].items())}"
        table.add_row(label, *cells, f"{(row.get('params') or 0) / 1e3:.0f}k",
                      f"{(row.get('flops') or 0) / 1e6:.1f}", f"{row['wall_s'] / 60:.1f}")  # fmt: skip
    lines = [table, f"reference: {report['reference']}"]
    lines += [f"claim: {c['claim']}: {c['verdict_text']}" for c in report.get("claims", [])] or [
        f"verdict: {report['verdict']}"
    ]
    lines.append(f"compute: {report['wall_s']:.0f} s over {len(report['rows'])} settings x {report['folds']} folds")
    return lines


def write_claims_summary(results: Path) -> Path:
    """Holm across every claim of every stored study (``results/*/study.json``): each study.json gets its claims'
    set-wide adjusted p and verdict, and ``results/claims.md`` the table of them all (the README's table)."""
    from lit_mc.io import atomic_write_text
    from lit_mc.studies.study import adjust_study_set

    paths = [results / name / "study.json" for name in available_studies(results.parent)]
    reports = adjust_study_set([read_json(p) for p in paths])
    rows = []
    for path, report in zip(paths, reports, strict=True):
        atomic_write_text(path, json.dumps(report, indent=1, sort_keys=True))
        for c in report.get("claims", []):
            effects = ", ".join(f"{100 * link['mean_difference']:+.1f}" for link in c["links"])
            cis = ", ".join(f"[{100 * link['ci_low']:+.1f}, {100 * link['ci_high']:+.1f}]" for link in c["links"])
            mdes = ", ".join(f"{100 * link['mde']:.1f}" for link in c["links"])
            rows.append([report["name"], c["claim"], effects, cis, f"{c['p_value']:.2g}", f"{c['p_holm']:.2g}", mdes,
                         c["verdict"]])  # fmt: skip
    header = ["study", "claim", "effect (points)", "95% CI", "p", "p (Holm, all claims)", "detectable", "verdict"]
    out = results / "claims.md"
    atomic_write_text(out, markdown_table(header, rows) + "\n")
    return out


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


# -- captioning -----------------------------------------------------------------------------------------------
CAPTIONERS = ("show_and_tell", "show_attend_tell", "transformer")
CAPTION_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
# Published Flickr8k test scores (x100), Xu et al., "Show, Attend and Tell", ICML 2015, Table 1 (VGG encoder).
PUBLISHED = {
    "Xu et al. 2015, soft attention": {"bleu1": 67.0, "bleu2": 44.8, "bleu3": 29.9, "bleu4": 19.5, "meteor": 18.93},
    "Xu et al. 2015, hard attention": {"bleu1": 67.0, "bleu2": 45.7, "bleu3": 31.4, "bleu4": 21.3, "meteor": 20.30},
}


def caption_metric_table(root: Path | None = None) -> str:
    """Test scores (x100) of every trained captioner for each beam size, with the published reference points."""
    root = (root or results_root()) / "flickr8k"
    rows = []
    for model in CAPTIONERS:
        path = root / model / "test_metrics.json"
        if not path.is_file():
            continue
        for beam, scores in read_json(path).items():
            k = beam.removeprefix("beam")
            rows.append(
                [model, "greedy" if k == "1" else f"beam {k}", *(f"{100 * scores[m]:.1f}" for m in CAPTION_METRICS)]
            )
    for name, scores in PUBLISHED.items():
        rows.append([name, "beam (paper)", *(f"{scores[m]:.1f}" if m in scores else "-" for m in CAPTION_METRICS)])
    header = ["model", "decoding", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    return markdown_table(header, rows)


def _stop_reason(config: dict[str, Any], epochs: int) -> str:
    """Why a run with this saved config ended after ``epochs`` epochs."""
    trainer = config.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and epochs >= max_epochs:
        return f"the epoch limit ({max_epochs})"
    for callback in trainer.get("callbacks") or []:
        if str(callback.get("class_path", "")).endswith("EarlyStopping"):
            args = callback.get("init_args") or {}
            return f"early stopping ({args.get('monitor')} not better for {args.get('patience')} epochs)"
    return "stopped before its epoch limit"


def caption_training_summary(root: Path | None = None) -> str:
    """How long each captioner trained and why it stopped, and which model leads each test metric (beam 3)."""
    import yaml

    from lit_mc.runs import read_metrics_csv

    root = (root or results_root()) / "flickr8k"
    rows, leaders = [], {}
    for model in CAPTIONERS:
        folder = root / model
        if not (folder / "metrics.csv").is_file():
            continue
        rows_csv = read_metrics_csv(folder / "metrics.csv")
        curve = [(int(r["epoch"]) + 1, r["val_cider"]) for r in rows_csv if "val_cider" in r]
        config = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
        best_epoch, best = max(curve, key=lambda point: point[1])
        rows.append(
            [model, str(curve[-1][0]), f"{100 * best:.1f} (epoch {best_epoch})", _stop_reason(config, curve[-1][0])]
        )
        tested = read_json(folder / "test_metrics.json") if (folder / "test_metrics.json").is_file() else {}
        for metric, value in tested.get("beam3", {}).items():
            if value > leaders.get(metric, ("", -1.0))[1]:
                leaders[metric] = (model, value)
    table = markdown_table(["model", "epochs trained", "best validation CIDEr", "stopped by"], rows)
    lead = ", ".join(f"{m}: {leaders[m][0]} ({100 * leaders[m][1]:.1f})" for m in CAPTION_METRICS if m in leaders)
    return table + (f"\n\nHighest test score per metric with beam 3: {lead}." if lead else "")


def caption_curves_figure(root: Path | None = None) -> Figure:
    """Training loss (per epoch) and validation loss / CIDEr of each trained captioner."""
    from lit_mc.runs import read_metrics_csv

    root = (root or results_root()) / "flickr8k"
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    for i, model in enumerate(CAPTIONERS):
        rows = read_metrics_csv(root / model / "metrics.csv")
        for ax, key in zip(axes, ("train_loss_epoch", "val_loss", "val_cider"), strict=True):
            points = [(r["epoch"] + 1, r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), "o-", color=f"C{i}", label=model)
    for ax, title in zip(axes, ("training loss", "validation cross-entropy", "validation CIDEr (greedy)"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def caption_examples_markdown(model: str, kind: str, root: Path | None = None) -> str:
    """The best- or worst-scored test captions of a model, with their references."""
    examples = read_json((root or results_root()) / "flickr8k" / model / "examples.json")
    rows = [[e["image"], e["caption"], f"{e['cider']:.2f}", "<br>".join(e["references"])] for e in examples[kind]]
    return markdown_table(["image", "generated (greedy)", "CIDEr", "references"], rows)


def toy_attention_markdown(bench: Path | None = None) -> str:
    """Attention mass inside the named object's box on the toy set, against uniform attention."""
    data = read_json((bench or bench_root()) / "toy_attention.json")
    rows = []
    for model in ("show_attend_tell", "transformer"):
        m = data[model]
        rows.append([model, m["objects_named"], f"{100 * m['attention_in_box_mean']:.1f}",
                     f"{100 * m['uniform_attention_in_box_mean']:.1f}", m["captions_equal_to_a_reference"],
                     m["test_images"]])  # fmt: skip
    header = ["model", "objects named", "attention in box %", "uniform attention in box %", "exact captions", "images"]
    return markdown_table(header, rows)


def caption_data_overview(data_dir: Path, min_count: int = 5, samples: int = 3) -> tuple[str, Figure]:
    """Split sizes, caption lengths, vocabulary size and coverage; a figure with sample images and references."""
    import warnings

    from lit_mc.captioning.annotations import load_annotations
    from lit_mc.captioning.encoder import load_image
    from lit_mc.captioning.vocab import Vocabulary, clean_caption

    text = data_dir / "Flickr8k_text"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ann = load_annotations(data_dir / "Images", text / "Flickr8k.token.txt", text, None)
    words = {n: [clean_caption(c) for c in caps] for n, caps in ann.captions.items()}
    vocab = Vocabulary.build((c for n in ann.splits["train"] for c in words[n]), min_count)
    known = set(vocab.words)
    rows = []
    for split, names in ann.splits.items():
        caps = [c for n in names for c in words[n]]
        tokens = [w for c in caps for w in c]
        lengths = sorted(len(c) for c in caps)
        coverage = sum(w in known for w in tokens) / len(tokens)
        rows.append([split, len(names), len(caps), f"{sum(lengths) / len(lengths):.1f}", lengths[len(lengths) // 2],
                     lengths[int(0.95 * len(lengths))], f"{100 * coverage:.2f}"])  # fmt: skip
    table = markdown_table(["split", "images", "captions", "mean words", "median", "95th percentile",
                            f"tokens in vocabulary % (min_count {min_count})"], rows)  # fmt: skip
    fig = Figure(figsize=(12, 3.2 * samples))
    axes = fig.subplots(samples, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.2]})
    for ax_image, ax_text, name in zip(axes[:, 0], axes[:, 1], ann.splits["test"][:samples], strict=True):
        ax_image.imshow(load_image(data_dir / "Images" / name, 224).permute(1, 2, 0).numpy())
        ax_text.text(0, 0.5, "\n".join(ann.captions[name]), va="center", fontsize=9, wrap=True)
        for ax in (ax_image, ax_text):
            ax.axis("off")
        ax_image.set_title(name, fontsize=8)
    fig.tight_layout()
    return table + f"\n\nVocabulary: {len(vocab)} entries (4 special tokens).", fig


def studies_summary_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """One line per study: command, budget, compute and the verdict line (the README's results table)."""
    rows = []
    for r in reports:
        budget = " ".join(b.removeprefix("--") for b in r["budget"] if "progress_bar" not in b)
        command = f"`lit-mc study run configs/studies/{r['name']}.yaml`"
        rows.append([r["name"], command, f"{len(r['rows'])} x {r['folds']} folds, {budget}",
                     f"{r['wall_s'] / 60:.1f}", r["verdict"]])  # fmt: skip
    return markdown_table(["study", "command", "settings, budget", "cell minutes", "verdict"], rows)


def write_study_figures(report: dict[str, Any], store: ResultsStore) -> list[Path]:
    """Learning curves, metric per setting and (for 2-D grids) the heat map, as PNGs beside ``study.json``."""
    cells = {key: store.read(key) for row in report["rows"] for key in row["cells"]}
    written = []
    for name, fig in study_figures(report, cells).items():
        atomic_save_figure(fig, store.root / name)
        written.append(store.root / name)
    return written
