"""Exploratory data analysis helpers that the report notebook calls: counts, channel statistics, a sample grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure


def class_counts(labels: torch.Tensor, class_names: Sequence[str]) -> dict[str, int]:
    """Number of images per class, in class order."""
    counts = torch.bincount(labels, minlength=len(class_names))
    return {name: int(c) for name, c in zip(class_names, counts, strict=True)}


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W), on the [0, 1] scale, accumulated in float64."""
    if images.numel() == 0:
        raise ValueError("cannot compute channel statistics of an empty image set")
    c = images.shape[1]
    n = images.numel() // c
    sums = torch.zeros(c, dtype=torch.float64)
    sq_sums = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(8192):  # bounded memory: 8192 images at a time in float64
        x = chunk.to(torch.float64).transpose(0, 1).reshape(c, -1) / 255.0
        sums += x.sum(1)
        sq_sums += (x * x).sum(1)
    mean = sums / n
    std = (sq_sums / n - mean * mean).clamp_min(0).sqrt()
    return mean.float(), std.float()


def sample_grid(
    images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], per_class: int = 8, seed: int = 0
) -> Figure:
    """A figure with ``per_class`` random images of each class, one row per class, labelled."""
    gen = torch.Generator().manual_seed(seed)
    fig = Figure(figsize=(per_class * 0.9, len(class_names) * 0.95))
    axes = fig.subplots(len(class_names), per_class, squeeze=False)
    for row, name in enumerate(class_names):
        members = torch.nonzero(labels == row).flatten()
        picks = members[torch.randperm(len(members), generator=gen)[:per_class]]
        for col in range(per_class):
            ax = axes[row][col]
            ax.set_axis_off()
            if col < len(picks):
                ax.imshow(images[picks[col]].permute(1, 2, 0).numpy())
        axes[row][0].set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    return fig
