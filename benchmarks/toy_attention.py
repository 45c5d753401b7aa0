"""Does attention look at the object being named? Measured on the synthetic shapes set, where the boxes are known.

Trains ShowAttendTell and the TransformerCaptioner (the shipped Flickr8k configs, pointed at the toy set and the
parameter-free 8x8-patch encoder) and, on the toy test split, reports the share of attention mass inside the box of
each object a greedy caption names ("<colour> <shape>"), word by word (the colour word, the shape word), against the
box's share of the image (what uniform attention would score); the attention's normalised entropy by word class
(colour, shape, other); and for the transformer both per decoder layer and head. Writes
``benchmarks/results/toy_attention.json`` and two overlay PNGs per model.

    python benchmarks/toy_attention.py [--epochs 15] [--train 1000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lit_mc.captioning.attention import attention_figure
from lit_mc.captioning.attention_reading import entropy_by_head, entropy_by_word_class, greedy_attention
from lit_mc.captioning.toy import COLOURS, SHAPES, attention_in_box_by_word, write_toy_set
from lit_mc.cli import run_lightning_cli
from lit_mc.io import atomic_save_figure, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results"


def train(model: str, root: Path, epochs: int, workdir: Path):
    args = [
        "fit", "--config", str(REPO / "configs" / "flickr8k" / f"{model}.yaml"), f"--data.data_dir={root}",
        "--data.encoder.backbone=patches", "--data.encoder.weights=null", "--data.encoder.image_size=64",
        "--data.encoder.patch_size=8", "--data.min_count=1", "--data.batch_size=32", "--data.eval_batch_size=100",
        f"--trainer.max_epochs={epochs}", "--test_after_fit=false", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--trainer.default_root_dir={workdir}", "--trainer.logger=false",
        "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]", "--model.lr=0.002",
    ]  # fmt: skip
    return run_lightning_cli(args)


def toy_word_class(word: str) -> str:
    return "colour" if word in COLOURS else "shape" if word in SHAPES else "other"


def measure(cli, root: Path) -> dict:
    boxes = json.loads((root / "boxes.json").read_text())
    dm, module = cli.datamodule, cli.model.eval()
    found, heads_found, exact, examples = [], [], 0, []
    captions, attentions, head_maps = [], [], []
    for rows, references in dm.test_dataloader():
        batch = dm.on_before_batch_transfer((rows, references), 0)
        words, attention, heads = greedy_attention(module, batch["features"])
        for i, row in enumerate(rows.tolist()):
            objects = boxes[dm.names[row]]
            exact += " ".join(words[i]) in batch["references"][i]
            found += attention_in_box_by_word(words[i], attention[i], objects, dm.grid, 64)
            if heads[i] is not None:  # (layers, heads, T, cells): the same measure per layer and head
                heads_found += attention_in_box_by_word(words[i], heads[i].permute(2, 0, 1, 3), objects, dm.grid, 64)
            if len(examples) < 2:
                examples.append((row, words[i], attention[i]))
        captions += words
        attentions += attention
        head_maps += heads
    mean = lambda values: statistics.mean(float(v) for v in values)  # noqa: E731
    result = {
        "test_images": len(dm.splits["test"]),
        "captions_equal_to_a_reference": exact,
        "objects_named": len(found),
        "attention_in_box_mean": mean((f["colour"] + f["shape"]) / 2 for f in found),
        "attention_in_box_median": statistics.median(float((f["colour"] + f["shape"]) / 2) for f in found),
        "attention_in_box_colour_word_mean": mean(f["colour"] for f in found),
        "attention_in_box_shape_word_mean": mean(f["shape"] for f in found),
        "uniform_attention_in_box_mean": mean(f["share"] for f in found),
        "entropy_by_word_class": entropy_by_word_class(captions, attentions, toy_word_class),
        "examples": examples,
    }
    if heads_found:  # per layer and head: colour / shape word's in-box mass, and entropy by class
        layers, n_heads = heads_found[0]["shape"].shape
        in_box = [{"layer": layer, "head": head,
                   "colour_word": mean(f["colour"][layer, head] for f in heads_found),
                   "shape_word": mean(f["shape"][layer, head] for f in heads_found)}
                  for layer in range(layers) for head in range(n_heads)]  # fmt: skip
        result["per_head_in_box"] = in_box
        result["per_head_entropy"] = entropy_by_head(captions, head_maps, toy_word_class)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=OUT, help="results folder (default benchmarks/results)")
    opts = parser.parse_args()
    torch.manual_seed(0)
    results = {"epochs": opts.epochs, "train_images": opts.train, "encoder": "8x8 pixel patches of 64 px images"}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_toy_set(Path(tmp) / "toy", train=opts.train, val=100, test=200, size=64, seed=0)
        for model in ("show_attend_tell", "transformer"):
            start = time.perf_counter()
            cli = train(model, root, opts.epochs, Path(tmp) / model)
            seconds = time.perf_counter() - start
            m = measure(cli, root)
            for k, (row, words, attention) in enumerate(m.pop("examples")):
                fig = attention_figure(cli.datamodule.image(row), words, attention, cli.datamodule.grid)
                atomic_save_figure(fig, opts.out / f"toy_attention_{model}_{k}.png")
            m["train_seconds"] = round(seconds, 1)
            results[model] = m
            print(model, json.dumps(m, indent=1))
    atomic_write_text(opts.out / "toy_attention.json", json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
