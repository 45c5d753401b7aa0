"""Captioning speed on the real Flickr8k, each row a ratio measured side by side in one run.

1. Training steps of each captioner with cached (memory-mapped) encoder features vs the frozen encoder in the loop.
2. Beam search (k = 5) over a batch of test images at once vs one image at a time.
3. The full test-split evaluation (1,000 images, greedy, BLEU/METEOR/ROUGE-L/CIDEr) with ``Trainer.test``.

    python benchmarks/captioning_speed.py [--ckpt BEST.ckpt] [--steps 10]

Needs the feature cache (built by the first ``lit-mc fit`` of a Flickr8k config, or by this script). Writes
``benchmarks/results/captioning_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from lit_mc.captioning import Flickr8kDataModule, ShowAndTell, ShowAttendTell, TransformerCaptioner
from lit_mc.captioning.module import CaptionModule
from lit_mc.io import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "flickr8k"
MODELS = {"show_and_tell": ShowAndTell, "show_attend_tell": ShowAttendTell, "transformer": TransformerCaptioner}


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


def train_steps_per_s(model: str, cached: bool, steps: int, encoder_blocks: int = 0) -> float:
    """Training steps per second over ``steps`` steps (after one warm-up step), batch 64."""
    dm = Flickr8kDataModule(str(DATA), cache_features=cached, train_images=steps * 64 // 5 + 64, val_images=1)
    dm.prepare_data()
    dm.setup("fit")
    module = MODELS[model](encoder_blocks=encoder_blocks)
    _trainer(max_steps=1, limit_val_batches=0).fit(module, dm)  # builds the decoder, warms up
    start = time.perf_counter()
    _trainer(max_steps=steps, limit_val_batches=0).fit(module, dm)
    return steps / (time.perf_counter() - start)


def beam_rates(module: CaptionModule, features: torch.Tensor, beam: int) -> tuple[float, float]:
    """Captions per second: the whole batch in one beam search, and one image per call."""
    start = time.perf_counter()
    module.generate(features, beam)
    batched = len(features) / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(len(features)):
        module.generate(features[i : i + 1], beam)
    single = len(features) / (time.perf_counter() - start)
    return batched, single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="a trained ShowAttendTell checkpoint for rows 2 and 3")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "captioning_speed.json"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--beam_images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="median over this many measurements")
    opts = parser.parse_args()
    warnings.filterwarnings("ignore")
    results: dict = {
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "train_steps": {},
    }
    steps_per_epoch = 30_000 // 64  # 6,000 training images x 5 captions, batch 64
    for model in MODELS:
        cached = [train_steps_per_s(model, True, opts.steps) for _ in range(opts.repeats)]
        live = [train_steps_per_s(model, False, max(2, opts.steps // 5)) for _ in range(opts.repeats)]
        tuned = train_steps_per_s(model, False, max(2, opts.steps // 5), encoder_blocks=2)
        results["train_steps"][model] = {
            "cached_steps_per_s": cached, "encoder_steps_per_s": live, "finetune2_steps_per_s": tuned,
            "ratio": statistics.median(cached) / statistics.median(live),
            "epoch_s_cached": steps_per_epoch / statistics.median(cached),
            "epoch_s_encoder": steps_per_epoch / statistics.median(live),
            "epoch_s_finetune2": steps_per_epoch / tuned,
        }  # fmt: skip
        print(model, results["train_steps"][model], flush=True)
    dm = Flickr8kDataModule(str(DATA), eval_batch_size=1000)
    dm.prepare_data()
    dm.setup("test")
    module = ShowAttendTell.load_from_checkpoint(opts.ckpt) if opts.ckpt else None
    if module is None:
        module = ShowAttendTell()
        module._build(dm.vocab, dm.feature_dim)
    module.eval()
    batch = dm.on_before_batch_transfer(next(iter(dm.test_dataloader())), 0)
    rates = [beam_rates(module, batch["features"][: opts.beam_images], 5) for _ in range(opts.repeats)]
    batched, single = (statistics.median(r[i] for r in rates) for i in (0, 1))
    results["beam5"] = {"batched_captions_per_s": [r[0] for r in rates], "single_captions_per_s": [r[1] for r in rates],
                        "ratio": batched / single, "images": opts.beam_images, "trained": bool(opts.ckpt)}  # fmt: skip
    print("beam5", results["beam5"], flush=True)
    module.hparams.test_beam_sizes = [1]
    start = time.perf_counter()
    scores = _trainer().test(module, dm, verbose=False)[0]
    results["test_evaluation"] = {"seconds": time.perf_counter() - start, "images": 1000, "scores": scores}
    print("test evaluation", results["test_evaluation"], flush=True)
    atomic_write_text(Path(opts.out), json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
