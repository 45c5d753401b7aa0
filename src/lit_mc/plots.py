"""Figures shared by callbacks and notebooks (one function each, returning a matplotlib Figure)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def confusion_matrix_figure(confusion: torch.Tensor, class_names: Sequence[str], title: str | None = None) -> Figure:
    """Row-normalised confusion matrix (rows: true class, columns: predicted), with the counts' shares printed."""
    counts = confusion.float()
    shares = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    n = len(class_names)
    fig = Figure(figsize=(0.6 * n + 2, 0.6 * n + 1.5))
    ax = fig.subplots()
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            value = shares[i, j].item()
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white" if value > 0.5 else "black"
            )
    fig.colorbar(image, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _mean_curve(cells: list[dict], key: str) -> tuple[list[int], list[float], list[int]]:
    """Epoch-wise mean of ``key`` over the folds that logged that epoch, and how many did: the curve goes on past
    the fold that stopped first, instead of being cut there."""
    per_fold = [{row["epoch"]: row[key] for row in cell["curves"] if row.get(key) is not None} for cell in cells]
    epochs = sorted(set().union(*per_fold)) if per_fold else []
    counts = [sum(e in c for c in per_fold) for e in epochs]
    means = [sum(c[e] for c in per_fold if e in c) / n for e, n in zip(epochs, counts, strict=True)]
    return epochs, means, counts


def curve_colours(n: int) -> list:
    """``n`` distinct colours (tab10 up to ten curves, then evenly spaced over a perceptual colour map)."""
    import matplotlib

    if n <= 10:
        return [f"C{i}" for i in range(n)]
    return [matplotlib.colormaps["turbo"](i / max(1, n - 1)) for i in range(n)]


SMALL_MULTIPLES = 8  # more settings than this get one small panel each instead of one crowded pair of axes


def _plot_mean_curve(ax, cells: list[dict], key: str, style: str, colour, label: str | None) -> None:
    """The mean curve: full strength while every fold still runs, faded where only some do."""
    epochs, values, counts = _mean_curve(cells, key)
    if not epochs:
        return
    full = [i for i, n in enumerate(counts) if n == len(cells)]
    last_full = full[-1] if full else -1
    x = [e + 1 for e in epochs]
    ax.plot(x[: last_full + 1], values[: last_full + 1], style, color=colour, label=label)
    if last_full < len(x) - 1:  # some folds stopped early: the rest of the mean, over the folds still running
        start = max(last_full, 0)
        ax.plot(x[start:], values[start:], style, color=colour, alpha=0.35, label=None if full else label)


def setting_value(value: object) -> str:
    """A setting's value as tables and legends print it: numbers shortest (0.0005, 64), anything else as text."""
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def ran_at(row: dict) -> str:
    """`` (ran at lr=0.0005)`` for a study row whose learning rate was re-tuned (its label names the setting, not
    the rate its runs used), else ``""``: tables and figure legends say the same."""
    ran = {k: v for k, v in (row.get("run_setting") or {}).items() if row["setting"].get(k) != v}
    if not ran:
        return ""
    return " (ran at " + ", ".join(f"{k.split('.')[-1]}={setting_value(v)}" for k, v in ran.items()) + ")"


def learning_curves_figure(rows: list[dict], cells: dict[str, dict], title: str | None = None) -> Figure:
    """Loss and accuracy per epoch for every setting (mean over folds; faded where some folds had already stopped):
    validation solid, training dashed; a diverged setting ends in a cross at its last logged epoch. The legend sits
    outside the axes. Past ``SMALL_MULTIPLES`` settings, one accuracy panel per setting on shared axes."""
    if len(rows) > SMALL_MULTIPLES:
        return _small_multiples(rows, cells, title)
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 2)
    for row, colour in zip(rows, curve_colours(len(rows)), strict=True):
        mine = [cells[key] for key in row["cells"]]
        diverged = bool(row.get("diverged"))
        named = "val" if _mean_curve(mine, "val_acc")[0] else "train"  # a run without a validation split: train
        for ax, metric in zip(axes, ("loss", "acc"), strict=True):
            for split, style in (("val", "-"), ("train", "--")):
                label = row["label"] + ran_at(row) + (" (diverged)" if diverged else "") if split == named else None
                _plot_mean_curve(ax, mine, f"{split}_{metric}", style, colour, label)
                epochs, values, _ = _mean_curve(mine, f"{split}_{metric}")
                if diverged and split == "val" and epochs:
                    ax.plot(epochs[-1] + 1, values[-1], "x", color=colour, markersize=9)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    faded = "\nfaded: some runs stopped" if any(len(row["cells"]) > 1 for row in rows) else ""
    validated = any(_mean_curve([cells[k] for k in row["cells"]], "val_acc")[0] for row in rows)
    splits = "val (solid), train (dashed)" if validated else "train (dashed); no validation split"
    axes[1].legend(fontsize=7, title=splits + faded, title_fontsize=7,
                   loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _small_multiples(rows: list[dict], cells: dict[str, dict], title: str | None) -> Figure:
    """One panel per setting: training (dashed) and validation (solid) accuracy, shared axes."""
    columns = min(5, len(rows))
    lines = -(-len(rows) // columns)
    fig = Figure(figsize=(2.6 * columns, 2.0 * lines + 0.6))
    axes = fig.subplots(lines, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, row in zip(axes, rows, strict=False):
        mine = [cells[key] for key in row["cells"]]
        for split, style in (("val", "-"), ("train", "--")):
            _plot_mean_curve(ax, mine, f"{split}_acc", style, "C0" if split == "val" else "C1", split)
        ax.set_title(row["label"] + ran_at(row) + (" (diverged)" if row.get("diverged") else ""), fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(rows) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, loc="lower right")
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("accuracy (val solid, train dashed)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def overfit_figure(results: list[dict]) -> Figure:
    """Training loss (log scale) and accuracy on the one repeated batch, step by step, one colour per model."""
    fig = Figure(figsize=(12, 3.8))
    axes = fig.subplots(1, 2)
    for result, colour in zip(results, curve_colours(len(results)), strict=True):
        curve = result["curve"]
        steps = range(1, len(curve["train_loss"]) + 1)
        axes[0].loglog(steps, curve["train_loss"], color=colour, label=result["config"])
        axes[1].semilogx(steps, curve["train_acc"], color=colour, label=result["config"])
    for ax, metric in zip(axes, ("training loss on the batch (log)", "training accuracy on the batch"), strict=True):
        ax.set_xlabel("step, log scale (the same batch each step)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle("Overfitting one real CIFAR-10 batch (benchmarks/overfit_one_batch.py)", fontsize=9)
    fig.tight_layout()
    return fig


def metric_bars_figure(report: dict) -> Figure:
    """The study's metric per setting: mean over folds with its 95% t-interval, and each fold as a dot."""
    rows = report["rows"]
    fig = Figure(figsize=(max(4, 1.3 * len(rows)), 3.5))
    ax = fig.subplots()
    import textwrap

    for i, row in enumerate(rows):
        s = row["summary"]
        if s["n"] > 1:
            below, above = 100 * (s["mean"] - s["ci_low"]), 100 * (s["ci_high"] - s["mean"])
            ax.errorbar(i, 100 * s["mean"], yerr=[[below], [above]], fmt="o", capsize=4, color="C0")
            ax.plot([i] * len(row["values"]), [100 * v for v in row["values"]], ".", color="grey", alpha=0.6)
        else:  # one run: a point, no interval to draw
            ax.plot(i, 100 * s["mean"], "s", color="C1")
    labels = ["\n".join(textwrap.wrap(row["label"] + ran_at(row), 24)) for row in rows]  # wrapped, not cut
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=7)
    several = any(row["summary"]["n"] > 1 for row in rows)
    runs = "seeds" if report.get("seeds") else "folds"
    ax.set_ylabel(f"{report['metric']} %" + (f"\n(mean; 95% t-interval over {runs},\nuncorrected; grey: {runs})"
                                           if several else " (one run each)"), fontsize=8)  # fmt: skip
    ax.set_title(report["name"], fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _numeric_first(value: object) -> tuple:
    """Sort key: numbers by value (batch 32 before 128), anything else by its text, after the numbers."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def heatmap_figure(report: dict) -> Figure | None:
    """Mean metric over a two-key grid (e.g. learning rate x batch size); None for other grids, and for settings
    whose values are structures (a list of channel widths is a configuration, not a point on an axis)."""
    keys = list(report["rows"][0]["setting"])
    if len(keys) != 2 or any(isinstance(v, list | dict) for row in report["rows"] for v in row["setting"].values()):
        return None
    ys = sorted({row["setting"][keys[0]] for row in report["rows"]}, key=_numeric_first)
    xs = sorted({row["setting"][keys[1]] for row in report["rows"]}, key=_numeric_first)
    grid = torch.full((len(ys), len(xs)), float("nan"), dtype=torch.float64)  # float64: rounds as the tables do
    for row in report["rows"]:
        grid[ys.index(row["setting"][keys[0]]), xs.index(row["setting"][keys[1]])] = row["summary"]["mean"]
    fig = Figure(figsize=(1.1 * len(xs) + 2.5, 0.8 * len(ys) + 1.5))
    ax = fig.subplots()
    image = ax.imshow(grid.numpy(), cmap="viridis")
    long = max(len(str(x)) for x in xs) > 8
    ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=30 if long else 0, ha="right" if long else "center",
                  fontsize=7 if long else 10)  # fmt: skip
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(keys[1].split(".")[-1])
    ax.set_ylabel(keys[0].split(".")[-1])
    low, high = image.get_clim()
    for i in range(len(ys)):
        for j in range(len(xs)):
            if not torch.isnan(grid[i, j]):  # dark text on the light (high) end of viridis, white on the dark end
                light = (grid[i, j].item() - low) / ((high - low) or 1) > 0.6
                ax.text(j, i, f"{100 * grid[i, j]:.1f}", ha="center", va="center", fontsize=8,
                        color="black" if light else "white")  # fmt: skip
    fig.colorbar(image, ax=ax, label=f"{report['metric']} (fraction; cells print %)")
    ax.set_title(f"{report.get('name', '')}: mean {report['metric']} per cell", fontsize=10)
    fig.tight_layout()
    return fig


def reliability_figure(bins: list[dict], title: str) -> Figure:
    """Accuracy against confidence per confidence bin (bar width: the bin; the diagonal is perfect calibration),
    with the share of images in each bin below: a bin of a few images says little."""
    fig = Figure(figsize=(5.2, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0]["high"] - bins[0]["low"]
    filled = [b for b in bins if b["count"]]
    total = sum(b["count"] for b in bins)
    top.bar([b["low"] for b in filled], [b["accuracy"] for b in filled], width=width, align="edge",
            color="C0", edgecolor="white", label="accuracy in the bin")  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.plot([b["confidence"] for b in filled], [b["confidence"] for b in filled], "C3.", label="mean confidence")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8, frameon=False)
    top.set_title(title, fontsize=9)
    bottom.bar([b["low"] for b in bins], [b["count"] / total for b in bins], width=width, align="edge", color="C7")
    bottom.set_ylabel("share of images")
    bottom.set_xlabel("confidence (top-class probability)")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def mistakes_figure(images: torch.Tensor, captions: Sequence[str], title: str, columns: int = 8) -> Figure:
    """A grid of images (uint8, N x 3 x H x W), each with its caption (e.g. 'cat -> dog 0.99')."""
    rows = max(1, -(-len(images) // columns))
    fig = Figure(figsize=(columns * 1.1, rows * 1.6))
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(images):
            ax.imshow(images[i].permute(1, 2, 0).numpy())
            ax.set_title(captions[i], fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
