"""Overfit one real Flickr8k batch with each shipped captioner config: the loss curve and the captions it decodes.

    python benchmarks/overfit_captioning.py [--data data/flickr8k] [--steps 300] [--images 4]

Runs ``lit-mc fit --config configs/flickr8k/X.yaml --trainer.overfit_batches=1`` on the first ``images`` training
images with their five references each (one batch of 5 x ``images`` pairs, the same every step, the encoder run on
the pictures: no feature cache needed), then decodes the batch's images greedily and sets each caption beside its
references. Five different captions of one picture cannot all be predicted, so the loss does not reach 0: the
test is passed when the cross-entropy is far below its first value and every greedy caption is one of the
picture's references word for word (memorised). Results go to ``benchmarks/results/overfit_captioning.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from lit_mc.io import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overfit_one_batch import REPO, fit_in_temp_dir  # noqa: E402  (a sibling script)

MODELS = ("show_and_tell", "show_attend_tell", "transformer")


def overfit(model: str, data: Path, steps: int, images: int, extra: list[str]) -> dict[str, Any]:
    """One captioner's overfit run: its per-step cross-entropy and its greedy captions of the batch's pictures."""
    cli, seconds, rows = fit_in_temp_dir(
        ["--config", str(REPO / "configs" / "flickr8k" / f"{model}.yaml"), f"--data.data_dir={data}",
         "--data.init_args.cache_features=false", f"--data.init_args.train_images={images}",
         "--data.init_args.val_images=1", f"--data.init_args.batch_size={5 * images}",
         "--trainer.overfit_batches=1", f"--trainer.max_epochs={steps}", "--trainer.limit_val_batches=0",
         "--trainer.callbacks=[]", "--test_after_fit=false", "--trainer.enable_checkpointing=false",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--model.init_args.dropout=0.0", *extra]
    )  # fmt: skip
    losses = [float(r["train_ce"]) for r in rows if r.get("train_ce")]
    module, dm = cli.model.eval(), cli.datamodule
    rows = sorted(set(dm.train_rows[: 5 * images].tolist()))
    batch = dm.on_before_batch_transfer((torch.tensor(rows), torch.zeros(len(rows), 1, 1, dtype=torch.long)), 0)
    batch = dm.on_after_batch_transfer(batch, 0)
    with torch.no_grad():
        captions = module.captions(module.batch_features(batch), 1)
    decoded = []
    for row, caption in zip(rows, captions, strict=True):
        references = [" ".join(c) for c in dm.words[dm.names[row]]]
        decoded.append({"image": dm.names[row], "caption": caption, "references": references,
                        "memorised": caption in references})  # fmt: skip
    return {"model": model, "steps": len(losses), "images": len(rows), "pairs": 5 * images,
            "first_ce": losses[0], "final_ce": losses[-1], "memorised": sum(d["memorised"] for d in decoded),
            "wall_s": seconds, "curve": {"train_ce": losses}, "captions": decoded}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("LIT_MC_FLICKR8K", "data/flickr8k"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--images", type=int, default=4, help="pictures in the batch (five captions each)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "overfit_captioning.json"))
    args, extra = parser.parse_known_args()
    results = []
    for model in args.models:
        result = overfit(model, Path(args.data).resolve(), args.steps, args.images, extra)
        ce = f"cross-entropy {result['first_ce']:.2f} -> {result['final_ce']:.3f} in {result['steps']} steps"
        print(f"{model}: {ce}; {result['memorised']} of {result['images']} memorised ({result['wall_s']:.0f} s)")
        results.append(result)
    atomic_write_text(Path(args.out), json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
