"""After training: the stored results a captioning report needs, from a run folder and the data (no training).

``python -m lit_mc.report.caption_runs RUN_DIR ... --out results/flickr8k`` copies each
run's metrics log and test scores, scores every test caption against its references (per-image CIDEr), and draws
the attention overlays of the best- and worst-scored captions from the run's best checkpoint alone (its
vocabulary is inside it). The notebook then reads only ``results/flickr8k/``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from lit_mc.captioning.annotations import load_annotations
from lit_mc.captioning.metrics import per_image_scores
from lit_mc.captioning.vocab import clean_caption
from lit_mc.io import atomic_write_text


def best_checkpoint(run: Path) -> Path:
    """The run's best checkpoint as its ``ModelCheckpoint`` recorded it in ``last.ckpt`` (not the newest file: a
    folder can hold more than one ``best-*.ckpt``)."""
    from lit_mc.checkpoints import read_checkpoint

    last = run / "checkpoints" / "last.ckpt"
    states = read_checkpoint(last).get("callbacks", {}) if last.is_file() else {}
    recorded = [s.get("best_model_path") for k, s in states.items() if k.startswith("ModelCheckpoint")]
    found = [run / "checkpoints" / Path(p).name for p in recorded if p]
    found = [p for p in found if p.is_file()] or sorted(run.glob("checkpoints/best-*.ckpt"))[-1:]
    if not found:
        raise FileNotFoundError(f"no best-*.ckpt in {run}/checkpoints")
    return found[0]


def analyse_run(run: Path, data_dir: Path, out: Path, examples: int = 3, beam: int = 1) -> dict[str, Any]:
    """Write ``out/{metrics.csv, test_metrics.json, examples.json, example_*.png}`` for one trained run."""
    from lit_mc.captioning import Flickr8kDataModule
    from lit_mc.captioning.attention import write_attention_maps
    from lit_mc.checkpoints import model_and_data_args
    from lit_mc.runner import run_lightning_cli

    out.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "test_metrics.json", "config.yaml"):
        if (run / name).is_file():
            shutil.copy(run / name, out / name)
    with (run / "captions.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["beam_size"]) == beam]
    text = data_dir / "Flickr8k_text"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ann = load_annotations(data_dir / "Images", text / "Flickr8k.token.txt", text, None)
    ckpt = best_checkpoint(run)
    args = [*model_and_data_args(str(ckpt)), f"--data.init_args.data_dir={data_dir}"]
    cli = run_lightning_cli([*args, "--trainer.logger=false"], run=False)
    dm: Flickr8kDataModule = cli.datamodule
    dm.prepare_data()
    dm.setup("test")
    refs = [[" ".join(clean_caption(c)) for c in ann.captions[dm.names[int(r["row"])]]] for r in rows]
    per_image = per_image_scores([r["caption"] for r in rows], refs)
    scores = per_image["cider"]
    table = io.StringIO()  # every test caption with its scores: what paired comparisons between runs resample
    writer = csv.writer(table)
    writer.writerow(["row", "image", "caption", "cider", "bleu4"])
    for r, cider, bleu4 in zip(rows, scores, per_image["bleu4"], strict=True):
        writer.writerow([r["row"], dm.names[int(r["row"])], r["caption"], f"{cider:.6f}", f"{bleu4:.6f}"])
    atomic_write_text(out / "per_image.csv", table.getvalue())
    order = sorted(range(len(rows)), key=lambda i: scores[i])
    picked = {"best": order[::-1][:examples], "worst": order[:examples]}
    module = type(cli.model).load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    summary: dict[str, Any] = {"checkpoint": ckpt.name, "beam": beam, "mean_cider": sum(scores) / len(scores)}
    for kind, indices in picked.items():
        summary[kind] = []
        shutil.rmtree(out / kind, ignore_errors=True)  # figures of an earlier analysis would be mistaken for these
        image_rows = torch.tensor([int(rows[i]["row"]) for i in indices])
        batch = dm.on_before_batch_transfer((image_rows, torch.zeros(len(indices), 1, 1, dtype=torch.long)), 0)
        if module.encoder is None:
            batch = dm.on_after_batch_transfer(batch, 0)
        with torch.no_grad():
            features = module.batch_features(batch)
        maps = write_attention_maps(module, dm, {"features": features, "rows": image_rows}, out / kind)
        for i in indices:
            summary[kind].append({"image": dm.names[int(rows[i]["row"])], "caption": rows[i]["caption"],
                                  "references": refs[i], "cider": scores[i]})  # fmt: skip
        summary[f"{kind}_figures"] = [str(m.path.relative_to(out)) for m in maps]
    atomic_write_text(out / "examples.json", json.dumps(summary, indent=1))
    return summary


def choose_decoding(
    checkpoint: Path, data_dir: Path, beams: tuple[int, ...] = (1, 3, 5), penalties: tuple[float, ...] = (0.0, 0.5, 1.0)
) -> dict[str, Any]:
    """Validation CIDEr (greedy, and each beam size with each length penalty) of a checkpoint, and the best setting:
    the decoding that the test split is then scored with, chosen without looking at it."""
    from lit_mc.checkpoints import model_and_data_args
    from lit_mc.runner import run_lightning_cli

    grid = []
    for k in beams:
        for penalty in penalties if k > 1 else (0.0,):  # the length penalty only reorders finished beams
            args = [*model_and_data_args(str(checkpoint)), f"--data.init_args.data_dir={data_dir}",
                    f"--model.init_args.val_beam_size={k}", f"--model.init_args.length_penalty={penalty}",
                    "--trainer.logger=false", "--trainer.enable_progress_bar=false"]  # fmt: skip
            cli = run_lightning_cli(args, run=False)
            scores = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint),
                                          verbose=False)[0]  # fmt: skip
            grid.append({"beam_size": k, "length_penalty": penalty, "val_cider": float(scores["val_cider"]),
                         "val_bleu4": float(scores["val_bleu4"])})  # fmt: skip
    best = max(grid, key=lambda row: row["val_cider"])
    return {"checkpoint": checkpoint.name, "grid": grid, "best": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (lightning_logs/flickr8k_<model>/version_N)")
    parser.add_argument("--data", default="data/flickr8k")
    parser.add_argument("--out", default="results/flickr8k")
    parser.add_argument("--choose-decoding", action="store_true",
                        help="also score beam sizes 1, 3, 5 x length penalties 0, 0.5, 1 on the validation split "
                             "(decoding.json: the test split's decoding, chosen on validation)")  # fmt: skip
    opts = parser.parse_args()
    for run in map(Path, opts.runs):
        if opts.choose_decoding:
            chosen = choose_decoding(best_checkpoint(run), Path(opts.data))
            out = Path(opts.out) / run.parent.name.removeprefix("flickr8k_")
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "decoding.json", json.dumps(chosen, indent=1))
            print(f"{run}: decode the test split with {chosen['best']}")
        name = run.parent.name.removeprefix("flickr8k_")
        summary = analyse_run(run, Path(opts.data), Path(opts.out) / name)
        print(f"{name}: mean per-image CIDEr {summary['mean_cider']:.3f}; examples in {Path(opts.out) / name}")


if __name__ == "__main__":
    main()
