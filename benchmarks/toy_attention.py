"""Does attention look at the object being named? Measured on the synthetic shapes set, where the boxes are known.

Trains ShowAttendTell and the TransformerCaptioner (the shipped Flickr8k configs, pointed at the toy set and the
parameter-free 8x8-patch encoder) and, on the toy test split, reports the share of attention mass inside the box of
each object a greedy caption names ("<colour> <shape>"), against the box's share of the image (what uniform
attention would score). Writes ``benchmarks/results/toy_attention.json`` and two overlay PNGs per model.

    python benchmarks/toy_attention.py [--epochs 15] [--train 1000]
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
from lit_mc.captioning.toy import attention_in_box, write_toy_set
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


def measure(cli, root: Path) -> dict:
    boxes = json.loads((root / "boxes.json").read_text())
    dm, module = cli.datamodule, cli.model.eval()
    inside, chance, named, exact = [], [], 0, 0
    examples = []
    for rows, captions in dm.test_dataloader():
        batch = dm.on_before_batch_transfer((rows, captions), 0)
        decoded = module.generate(batch["features"], beam_size=1)
        for i, row in enumerate(rows.tolist()):
            name = dm.names[row]
            words = module.vocab.decode(decoded.tokens[i].tolist()).split()
            found = attention_in_box(words, decoded.attention[i], boxes[name], dm.grid, 64)
            exact += " ".join(words) in batch["references"][i]
            named += len(found)
            inside += [mass for mass, _ in found]
            chance += [share for _, share in found]
            if len(examples) < 2:
                examples.append((row, words, decoded.attention[i]))
    return {
        "test_images": len(dm.splits["test"]),
        "captions_equal_to_a_reference": exact,
        "objects_named": named,
        "attention_in_box_mean": statistics.mean(inside),
        "attention_in_box_median": statistics.median(inside),
        "uniform_attention_in_box_mean": statistics.mean(chance),
        "examples": examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train", type=int, default=1000)
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
                atomic_save_figure(fig, OUT / f"toy_attention_{model}_{k}.png")
            m["train_seconds"] = round(seconds, 1)
            results[model] = m
            print(model, json.dumps(m, indent=1))
    atomic_write_text(OUT / "toy_attention.json", json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
