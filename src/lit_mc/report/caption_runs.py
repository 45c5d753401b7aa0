"""After training: the stored results a captioning report needs, from a run folder and the data (no training).

``python -m lit_mc.report.caption_runs RUN_DIR ... --out results/flickr8k`` copies each run's metrics log and test
scores, scores every test caption against its references (per-image CIDEr-D and BLEU-4, what paired bootstraps
between runs resample), measures the captions' diversity and copying, CIDEr by reference length, the model's
parameters and FLOPs, and draws the attention overlays of the best- and worst-scored captions from the run's best
checkpoint alone (its vocabulary is inside it). With ``--choose-decoding`` the beam size and length penalty are
first chosen on the validation split and the test split is decoded with them. The notebook then reads only
``results/flickr8k/``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lit_mc.captioning.annotations import load_annotations
from lit_mc.captioning.metrics import per_image_scores
from lit_mc.captioning.vocab import SPECIALS, clean_caption
from lit_mc.errors import LitMcError
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


def training_wall_minutes(run: Path) -> float | None:
    """Minutes from the run's start (its ``config.yaml``, written as ``fit`` sets up) to its last checkpoint (the
    end of its last epoch): training with its per-epoch validation, as this machine ran it. None without those
    files. A run resumed later (``--ckpt_path=last``) would count the pause too."""
    start, end = run / "config.yaml", run / "checkpoints" / "last.ckpt"
    if not (start.is_file() and end.is_file()):
        return None
    return (end.stat().st_mtime - start.stat().st_mtime) / 60


def analyse_run(
    run: Path, data_dir: Path, out: Path, examples: int = 3, beam: int = 1, tested_here: bool = False
) -> dict[str, Any]:
    """Write ``out/{metrics.csv, test_metrics.json, per_image.csv, examples.json, best/, worst/}`` for one trained
    run, from its test captions of beam size ``beam`` (``tested_here``: the test files :func:`test_with_decoding`
    already wrote into ``out``, not the run's own)."""
    from lit_mc.captioning import Flickr8kDataModule
    from lit_mc.captioning.attention import write_attention_maps
    from lit_mc.captioning.metrics import caption_diversity
    from lit_mc.checkpoints import model_and_data_args
    from lit_mc.runner import run_lightning_cli

    out.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.csv", "config.yaml", *(() if tested_here else ("test_metrics.json", "captions.csv"))):
        if (run / name).is_file():
            shutil.copy(run / name, out / name)
    with (out / "captions.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["beam_size"]) == beam]
    if not rows:
        raise LitMcError(
            f"{out / 'captions.csv'} holds no captions of beam size {beam}",
            "pass a beam size the run was tested with (its test_beam_sizes), or --choose-decoding",
        )
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
    training = [" ".join(c) for n in dm.splits["train"] for c in dm.words[n]]
    summary: dict[str, Any] = {
        "checkpoint": ckpt.name,
        "beam": beam,
        "mean_cider": sum(scores) / len(scores),
        "diversity": caption_diversity([r["caption"] for r in rows], training),
        "cider_by_reference_length": cider_by_reference_length(refs, scores),
        "size": model_size(module, dm),
        "training_wall_minutes": training_wall_minutes(run),
    }
    if reading := attention_reading(module, dm, [int(r["row"]) for r in rows]):
        summary["attention_entropy"] = reading
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


def attention_reading(module: Any, datamodule: Any, image_rows: list[int], batch_size: int = 100) -> dict[str, Any]:
    """The normalised entropy of the attention behind each greedy word on ``image_rows``, function words against
    content words (and per decoder layer and head where the model has them); empty for a model without attention
    over the grid."""
    from lit_mc.captioning.attention_reading import entropy_by_head, entropy_by_word_class, greedy_attention

    if hasattr(module, "prefix_attention"):  # a prefix LM's words do not attend to the grid (its mapper does)
        return {}
    captions, attentions, heads = [], [], []
    module.eval()
    for start in range(0, len(image_rows), batch_size):
        rows = torch.tensor(image_rows[start : start + batch_size])
        batch = datamodule.on_before_batch_transfer((rows, torch.zeros(len(rows), 1, 1, dtype=torch.long)), 0)
        if module.encoder is None:
            batch = datamodule.on_after_batch_transfer(batch, 0)
        with torch.no_grad():
            words, attention, per_head = greedy_attention(module, module.batch_features(batch))
        if not words:
            return {}
        captions, attentions, heads = captions + words, attentions + attention, heads + per_head
    reading: dict[str, Any] = {"images": len(image_rows), "by_word_class": entropy_by_word_class(captions, attentions)}
    if with_heads := [(c, h) for c, h in zip(captions, heads, strict=True) if h is not None]:
        reading["by_head"] = entropy_by_head([c for c, _ in with_heads], [h for _, h in with_heads])
    return reading


def cider_by_reference_length(references: list[list[str]], cider: list[float], bins: int = 3) -> list[dict[str, Any]]:
    """Mean per-image CIDEr-D of the test images in ``bins`` equal-count groups by the mean length (in words) of
    their references: whether a model does worse on the images people describe at length."""
    lengths = [sum(len(r.split()) for r in refs) / len(refs) for refs in references]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups = []
    for b in range(bins):
        part = order[b * len(order) // bins : (b + 1) * len(order) // bins]
        if part:
            groups.append({"min_words": lengths[part[0]], "max_words": lengths[part[-1]], "images": len(part),
                           "mean_cider": sum(cider[i] for i in part) / len(part)})  # fmt: skip
    return groups


def model_size(module: Any, datamodule: Any, words: int = 12) -> dict[str, float]:
    """Parameters (all, and trained) and the FLOPs of one teacher-forced caption of ``words`` words given one
    image's grid features (what a training step costs per caption; the encoder's cost, the same for every model on
    one cache, is left out)."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in module.parameters())
    trained = sum(p.numel() for p in module.parameters() if p.requires_grad)
    rows, cols = datamodule.grid
    features = torch.zeros(1, rows * cols, int(module.feature_dim))
    vocab = module.vocab
    caption = torch.full((1, words + 2), len(SPECIALS), dtype=torch.long)  # the first ordinary word, repeated
    caption[0, 0], caption[0, -1] = vocab.start, vocab.end
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module.eval().teacher_forced_loss(features, caption)
    return {"params": params, "trained_params": trained, "mflops_per_caption": counter.get_total_flops() / 1e6,
            "caption_words": words}  # fmt: skip


def test_with_decoding(checkpoint: Path, data_dir: Path, beam: int, penalty: float, out: Path) -> dict[str, Any]:
    """Decode the test split with beam size ``beam`` and length penalty ``penalty`` (chosen on validation) and write
    its scores and captions (``test_metrics.json``, ``captions.csv``) into ``out``."""
    from lit_mc.checkpoints import model_and_data_args
    from lit_mc.runner import run_lightning_cli

    args = ["test", *model_and_data_args(str(checkpoint)), f"--data.init_args.data_dir={data_dir}",
            f"--ckpt_path={checkpoint}", f"--model.init_args.test_beam_sizes=[{beam}]",
            f"--model.init_args.length_penalty={penalty}", "--trainer.logger=false",
            "--trainer.enable_progress_bar=false"]  # fmt: skip
    cli = run_lightning_cli(args)
    files = cli.model.test_report()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("test_metrics.json", "captions.csv"):
        atomic_write_text(out / name, files[name])
    return json.loads(files["test_metrics.json"])


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
                    "--model.init_args.eval_loss=false", "--data.init_args.val_images=null",  # all of them
                    "--trainer.logger=false", "--trainer.enable_progress_bar=false"]  # fmt: skip
            cli = run_lightning_cli(args, run=False)
            scores = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint),
                                          verbose=False)[0]  # fmt: skip
            grid.append({"beam_size": k, "length_penalty": penalty, "val_cider": float(scores["val_cider"]),
                         "val_bleu4": float(scores["val_bleu4"])})  # fmt: skip
    best = max(grid, key=lambda row: row["val_cider"])
    return {"checkpoint": checkpoint.name, "grid": grid, "best": best}


def _numbers(kind: type) -> Callable[[str], tuple]:
    """An argparse type: a comma-separated list of ``kind``."""

    def parse(text: str) -> tuple:
        return tuple(kind(x) for x in text.split(","))

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (lightning_logs/flickr8k_<model>/version_N)")
    parser.add_argument("--data", default="data/flickr8k")
    parser.add_argument("--out", default="results/flickr8k")
    parser.add_argument("--name", help="the results folder under --out (one run only; e.g. transformer/seed0); "
                                       "default: the run's logger name without flickr8k_")  # fmt: skip
    parser.add_argument("--beam", type=int, default=1, help="the run's test beam size to analyse (default 1)")
    parser.add_argument("--choose-decoding", action="store_true",
                        help="score each beam size x length penalty on the validation split (decoding.json), then "
                             "decode the test split with the best and analyse that")  # fmt: skip
    parser.add_argument("--beams", type=_numbers(int), default=(1, 3, 5),
                        help="beam sizes --choose-decoding scores (default 1,3,5)")  # fmt: skip
    parser.add_argument("--penalties", type=_numbers(float), default=(0.0, 0.5, 1.0),
                        help="length penalties --choose-decoding scores at each beam size above 1 "
                             "(default 0,0.5,1)")  # fmt: skip
    opts = parser.parse_args()
    if opts.name and len(opts.runs) > 1:
        parser.error("--name names one run's results folder: pass one run with it")
    for run in map(Path, opts.runs):
        name = opts.name or run.parent.name.removeprefix("flickr8k_")
        out, beam = Path(opts.out) / name, opts.beam
        if opts.choose_decoding:
            ckpt = best_checkpoint(run)
            chosen = choose_decoding(ckpt, Path(opts.data), opts.beams, opts.penalties)
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "decoding.json", json.dumps(chosen, indent=1))
            beam, penalty = chosen["best"]["beam_size"], chosen["best"]["length_penalty"]
            print(f"{run}: decoding the test split with beam {beam}, length penalty {penalty} (chosen on validation)")
            test_with_decoding(ckpt, Path(opts.data), beam, penalty, out)
        summary = analyse_run(run, Path(opts.data), out, beam=beam, tested_here=opts.choose_decoding)
        print(f"{name}: mean per-image CIDEr {summary['mean_cider']:.3f} at beam {beam}; results in {out}")


if __name__ == "__main__":
    main()
