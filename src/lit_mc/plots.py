"""Figures shared by callbacks and notebooks (one function each, returning a matplotlib Figure)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def confusion_matrix_figure(confusion: torch.Tensor, class_names: Sequence[str]) -> Figure:
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
    fig.tight_layout()
    return fig
