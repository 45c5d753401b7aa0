"""How each weight initialisation of the study scales the signal at the start of training (study 11).

Builds the baseline ConvNet (three conv stages 32/64/128, one hidden layer of 256, no BatchNorm) with each scheme
from the same seed and measures the standard deviation of every conv and linear layer's output (before its
activation) on the first 512 CIFAR-10 training images, standardised per channel by the training set's statistics as the
DataModule does. Writes
``benchmarks/results/init_signal.json``; the notebook's weight-init reflection reads it.

    python benchmarks/init_signal.py [--data data] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lit_mc.classification.datamodule import load_cifar10
from lit_mc.classification.eda import channel_stats
from lit_mc.classification.models.convnet import ConvNet, layer_output_stds
from lit_mc.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
INITS = ("default", "normal", "kaiming_normal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "data"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--images", type=int, default=512)
    opts = parser.parse_args()
    train = load_cifar10(opts.data).train_images
    mean, std = (t.float().view(1, 3, 1, 1) for t in channel_stats(train))  # over the training images
    x = (train[: opts.images].float() / 255 - mean) / std
    result = {"images": opts.images, "seed": 0, "inits": {}}
    for init in INITS:
        torch.manual_seed(0)
        stds = layer_output_stds(ConvNet(init=init).eval(), x)
        result["inits"][init] = [{"layer": name, "std": s} for name, s in stds]
        print(init, " ".join(f"{name} {s:.3g}" for name, s in stds))
    atomic_write_text(Path(opts.out) / "init_signal.json", json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
