"""Where a captioner looks: per-word attention overlays, and the callback that writes them during training.

``attention_figure`` draws the image once and then one panel per generated word, with that word's attention
over the grid upsampled onto the picture. The same function serves the callback, the tests and the notebook.
For the transformer, ``head_figure`` draws every layer's and head's cross-attention for one word.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from lit_mc.captioning.attention_reading import greedy_attention
from lit_mc.io import atomic_save_figure, run_folder
from lit_mc.loggers import ReportTable, log_figure, log_table, wants_tables


def _upsample(maps: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``(n, cells)`` attention -> ``(n, H, W)`` maps, each scaled to a maximum of 1 for display."""
    maps = maps.reshape(-1, 1, *grid).float()
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps / maps.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)


def _spotlight(picture: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The picture lit where the attention is and dimmed elsewhere (as Xu et al. 2015 drew it): no colour map laid
    over the picture's own colours, so red and blue objects read the same. ``heat`` is scaled to a maximum of 1."""
    return (picture * (0.15 + 0.85 * heat[..., None])).astype(np.uint8)


def attention_figure(
    image: torch.Tensor, words: list[str], attention: torch.Tensor, grid: tuple[int, int], title: str | None = None
):
    """Image plus one overlay per word; ``attention`` ``(len(words), cells)``, ``image`` ``(3, H, W)`` uint8; the
    image's title is the caption (``words`` joined) unless ``title`` is given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picture = image.permute(1, 2, 0).numpy()
    maps = _upsample(attention[: len(words)], grid, picture.shape[:2]).numpy()
    panels = len(words) + 1
    cols = min(panels, 6)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(picture)
    axes.flat[0].set_title(" ".join(words) if title is None else title, fontsize=7, wrap=True)
    for ax, word, heat in zip(axes.flat[1:], words, maps, strict=False):
        ax.imshow(_spotlight(picture, heat))
        ax.set_title(word, fontsize=9)
    fig.tight_layout()
    return fig


def head_figure(image: torch.Tensor, word: str, maps: torch.Tensor, grid: tuple[int, int]):
    """Every layer's and head's cross-attention for one word: ``maps`` ``(layers, heads, cells)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, heads = maps.shape[:2]
    picture = image.permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(layers, heads + 1, figsize=(2 * (heads + 1), 2.1 * layers), squeeze=False)
    for layer in range(layers):
        panels = [*maps[layer], maps[layer].mean(dim=0)]
        heat = _upsample(torch.stack(panels), grid, picture.shape[:2]).numpy()
        for head, ax in enumerate(axes[layer]):
            ax.imshow(_spotlight(picture, heat[head]))
            ax.set_title(f"layer {layer} " + (f"head {head}" if head < heads else "mean"), fontsize=8)
            ax.axis("off")
    fig.suptitle(f'cross-attention for "{word}"', fontsize=10)
    fig.tight_layout()
    return fig


class AttentionMaps(Callback):
    """After each validation epoch, caption ``num_images`` fixed validation images and draw where each word looked.

    PNGs go to ``<log_dir>/attention/epoch=NN/row=R.png`` (plus ``row=R_heads.png`` per-layer/head maps of the
    first noun-like word for the transformer) and, when the logger is TensorBoard or W&B, to the logger as well.
    Captioners without attention (Show and Tell) are skipped.
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self._batch: dict[str, Any] | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            features = pl_module.batch_features(batch)[: self.num_images].detach()
            self._batch = {"features": features, "rows": batch["rows"][: self.num_images]}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._batch is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if (folder := run_folder(trainer)) is None:
            return
        out = folder / "attention" / f"epoch={trainer.current_epoch:02d}"
        written = write_attention_maps(pl_module, trainer.datamodule, self._batch, out)
        for m in written:
            log_figure(trainer, f"attention/{m.path.stem}", m.figure)
        if wants_tables(trainer):  # each word's attention beside its picture and caption, one row per image
            table = ReportTable(["epoch", "image", "caption", "attention"])
            for m in written:
                if not m.per_head:
                    table.rows.append([trainer.current_epoch, trainer.datamodule.image(m.row), m.caption, m.figure])
            log_table(trainer, "attention/captions", table)


class AttentionMap(NamedTuple):
    """One written overlay: its PNG, the figure, the image's row, the greedy caption, and whether it is the
    transformer's per-layer/head map of one word (else every word's mean map)."""

    path: Path
    figure: Any
    row: int
    caption: str
    per_head: bool = False


def write_attention_maps(module, datamodule, batch: dict[str, Any], out: Path) -> list[AttentionMap]:
    """Greedy captions of ``batch`` with their attention overlays, written under ``out``."""
    import matplotlib.pyplot as plt

    was_training = module.training
    module.eval()
    if hasattr(module, "prefix_attention"):  # a prefix LM: its words come from the LM, its attention from the mapper
        written = _write_prefix_maps(module, datamodule, batch, out)
        module.train(was_training)
        for m in written:
            plt.close(m.figure)
        return written
    captions, attentions, heads = greedy_attention(module, batch["features"])
    written = []
    for row, words, attention, maps in zip(batch["rows"].tolist(), captions, attentions, heads, strict=False):
        image = datamodule.image(row)
        fig = attention_figure(image, words, attention, datamodule.grid)
        path = out / f"row={row}.png"
        atomic_save_figure(fig, path, dpi=55)
        written.append(AttentionMap(path, fig, row, " ".join(words)))
        if maps is not None:  # (layers, heads, T, cells): the transformer's heads at its longest word, usually a noun
            t = max(range(len(words)), key=lambda j: len(words[j]))
            head_fig = head_figure(image, words[t], maps[:, :, t], datamodule.grid)
            head_path = out / f"row={row}_heads.png"
            atomic_save_figure(head_fig, head_path, dpi=55)
            written.append(AttentionMap(head_path, head_fig, row, " ".join(words), per_head=True))
    module.train(was_training)
    for m in written:
        plt.close(m.figure)
    return written


def _write_prefix_maps(module, datamodule, batch: dict[str, Any], out: Path) -> list[AttentionMap]:
    """A prefix LM's greedy caption over its mapping network's attention: one panel per prefix position (where that
    position reads the grid), not per word; none for a mapper without attention (``mlp``)."""
    with torch.no_grad():
        captions = module.captions(batch["features"], beam_size=1)
        attention = module.prefix_attention(batch["features"])
    if attention is None:
        return []
    written = []
    labels = [f"prefix {j + 1}" for j in range(attention.shape[1])]
    for i, row in enumerate(batch["rows"].tolist()):
        title = f"{captions[i]}\n(where each prefix position reads the image)"
        fig = attention_figure(datamodule.image(row), labels, attention[i], datamodule.grid, title=title)
        path = out / f"row={row}.png"
        atomic_save_figure(fig, path, dpi=55)
        written.append(AttentionMap(path, fig, row, captions[i]))
    return written
