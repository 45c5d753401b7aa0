"""The Flickr8k report: metric tables against published scores, training summaries, examples, data overview."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lit_mc.errors import LitMcError
from lit_mc.report.common import bench_root, markdown_table, read_json, results_root

CAPTIONERS = ("show_and_tell", "show_attend_tell", "transformer")
CAPTION_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
# Published Flickr8k test scores (x100), Xu et al., "Show, Attend and Tell", ICML 2015, Table 1 (VGG encoder).
PUBLISHED = {
    "Xu et al. 2015, soft attention": {"bleu1": 67.0, "bleu2": 44.8, "bleu3": 29.9, "bleu4": 19.5, "meteor": 18.93},
    "Xu et al. 2015, hard attention": {"bleu1": 67.0, "bleu2": 45.7, "bleu3": 31.4, "bleu4": 21.3, "meteor": 20.30},
}


def caption_metric_table(root: Path | None = None) -> str:
    """Test scores (x100) of every trained captioner for each beam size, with the published reference points."""
    root = (root or results_root()) / "flickr8k"
    rows = []
    for model in CAPTIONERS:
        path = root / model / "test_metrics.json"
        if not path.is_file():
            continue
        for beam, scores in read_json(path).items():
            k = beam.removeprefix("beam")
            rows.append(
                [model, "greedy" if k == "1" else f"beam {k}", *(f"{100 * scores[m]:.1f}" for m in CAPTION_METRICS)]
            )
    for name, scores in PUBLISHED.items():
        rows.append([name, "beam (paper)", *(f"{scores[m]:.1f}" if m in scores else "-" for m in CAPTION_METRICS)])
    header = ["model", "decoding", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"]
    return markdown_table(header, rows)


def _stop_reason(config: dict[str, Any], epochs: int) -> str:
    """Why a run with this saved config ended after ``epochs`` epochs."""
    trainer = config.get("trainer") or {}
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and epochs >= max_epochs:
        return f"the epoch limit ({max_epochs})"
    for callback in trainer.get("callbacks") or []:
        if str(callback.get("class_path", "")).endswith("EarlyStopping"):
            args = callback.get("init_args") or {}
            return f"early stopping ({args.get('monitor')} not better for {args.get('patience')} epochs)"
    return "stopped before its epoch limit"


def caption_training_summary(root: Path | None = None) -> str:
    """How long each captioner's runs trained and why they stopped: every seed of the campaign where it has run,
    else the first round's single run. (Test scores are compared in the seed table, not here.)"""
    import yaml

    from lit_mc.runs import read_metrics_csv

    root = (root or results_root()) / "flickr8k"
    rows = []
    for model in CAPTIONERS:
        seeds = sorted(p for p in (root / model).glob("seed*") if (p / "metrics.csv").is_file())
        runs = [(f"{model}/{p.name}", p) for p in seeds] or [(f"{model} (first round)", root / model)]
        for name, folder in runs:
            if not (folder / "metrics.csv").is_file():
                continue
            curve = [(int(r["epoch"]) + 1, r["val_cider"]) for r in read_metrics_csv(folder / "metrics.csv")
                     if "val_cider" in r]  # fmt: skip
            config = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
            best_epoch, best = max(curve, key=lambda point: point[1])
            rows.append([name, str(curve[-1][0]), f"{100 * best:.1f} (epoch {best_epoch})",
                         _stop_reason(config, curve[-1][0])])  # fmt: skip
    return markdown_table(["run", "epochs trained", "best validation CIDEr (greedy, x100)", "stopped by"], rows)


def caption_curves_figure(root: Path | None = None) -> Figure:
    """Training cross-entropy (per epoch) and validation cross-entropy / CIDEr (x100) of each captioner: its first
    seed where the seeded campaign has run, else its first-round run, as the legend says."""
    from lit_mc.runs import read_metrics_csv

    root = (root or results_root()) / "flickr8k"
    fig = Figure(figsize=(12, 3.8))
    axes = fig.subplots(1, 3)
    for i, model in enumerate(CAPTIONERS):
        seeded = root / model / "seed0" / "metrics.csv"
        path, label = (seeded, f"{model} (seed 0)") if seeded.is_file() else (root / model / "metrics.csv",
                                                                              f"{model} (first round)")  # fmt: skip
        if not path.is_file():
            continue
        rows = read_metrics_csv(path)
        train = "train_ce" if any("train_ce" in r for r in rows) else "train_loss_epoch"  # CE without penalties
        label += "" if train == "train_ce" else " [training loss with any penalty]"  # runs logged before train_ce
        for ax, key, scale in zip(axes, (train, "val_loss", "val_cider"), (1, 1, 100), strict=True):
            points = [(r["epoch"] + 1, scale * r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), "o-", color=f"C{i}", label=label)
    titles = ("training cross-entropy", "validation cross-entropy", "validation CIDEr (greedy)")
    for ax, title, unit in zip(axes, titles, ("nats per word", "nats per word", "CIDEr x100"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def recipe_rows(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """The transformer recipe rows the campaign wrote (``results/flickr8k/recipe/r*.json``), by tag."""
    folder = (root or results_root()) / "flickr8k" / "recipe"
    return {p.stem: read_json(p) for p in sorted(folder.glob("r*.json"))} if folder.is_dir() else {}


def transformer_recipe_markdown(root: Path | None = None) -> str:
    """The greedy recipe search on validation: each row's settings (against the shipped r0), its best greedy
    validation CIDEr and epoch, and whether its validation cross-entropy rose from its minimum by the last epoch
    (the overfitting the shipped recipe showed)."""
    rows = []
    for tag, row in recipe_rows(root).items():
        curve = row["curve"]
        losses = [c["val_loss"] for c in curve if c.get("val_loss") is not None]
        lowest = min(range(len(losses)), key=losses.__getitem__) + 1 if losses else None
        rise = f"{losses[-1] - min(losses):+.3f} (lowest at epoch {lowest})" if losses else "-"
        settings = ", ".join(f"{k} {v}" for k, v in row["overrides"].items()) or "shipped: constant lr, dropout 0.1"
        rows.append([tag, settings, f"{100 * row['best_val_cider']:.1f}", f"{row['best_epoch']} of {row['epochs']}",
                     f"{100 * curve[-1]['val_cider']:.1f}", rise])  # fmt: skip
    header = ["row", "settings", "best val CIDEr", "at epoch", "last-epoch val CIDEr", "val CE, last minus lowest"]
    return markdown_table(header, rows)


def transformer_recipe_figure(root: Path | None = None) -> Figure:
    """Validation CIDEr (greedy) and cross-entropy per epoch of every recipe row."""
    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 2)
    for i, (tag, row) in enumerate(recipe_rows(root).items()):
        epochs = [c["epoch"] for c in row["curve"]]
        axes[0].plot(epochs, [100 * c["val_cider"] for c in row["curve"]], "o-", color=f"C{i}", label=tag, ms=3)
        losses = [(c["epoch"], c["val_loss"]) for c in row["curve"] if c.get("val_loss") is not None]
        if losses:
            axes[1].plot(*zip(*losses, strict=True), "o-", color=f"C{i}", label=tag, ms=3)
    for ax, title in zip(axes, ("validation CIDEr (greedy, x100)", "validation cross-entropy"), strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2)
    fig.suptitle("Transformer recipe search, one run per row (seed 0)", fontsize=10)
    fig.tight_layout()
    return fig


def caption_examples_markdown(model: str, kind: str, root: Path | None = None) -> str:
    """The best- or worst-scored test captions of a model, with their references; the header names the decoding
    they were scored at (the run's analysed beam)."""
    examples = read_json((root or results_root()) / "flickr8k" / model / "examples.json")
    beam = int(examples.get("beam", 1))
    rows = [[e["image"], e["caption"], f"{100 * e['cider']:.1f}", "<br>".join(e["references"])] for e in examples[kind]]
    decoding = "greedy" if beam == 1 else f"beam {beam}"
    return markdown_table(["image", f"generated ({decoding})", "CIDEr-D (x100)", "references"], rows)


def example_overlap_markdown(models: Sequence[str], root: Path | None = None) -> str:
    """For the best- and worst-scored examples of each model: how many of the caption's words occur in one of its
    references (a content check of what the table shows), and how many of the captions hold ``<unk>``."""
    rows = []
    for model in models:
        path = (root or results_root()) / "flickr8k" / model / "examples.json"
        if not path.is_file():
            continue
        examples = read_json(path)
        for kind in ("best", "worst"):
            shares, unk = [], 0
            for e in examples.get(kind, []):
                words = e["caption"].split()
                seen = {w for r in e["references"] for w in r.split()}
                shares.append(sum(w in seen for w in words) / max(1, len(words)))
                unk += "<unk>" in words
            if shares:
                rows.append([model, kind, len(shares), f"{100 * sum(shares) / len(shares):.0f}", unk])
    header = ["model", "examples", "captions", "caption words found in a reference %", "captions with <unk>"]
    return markdown_table(header, rows) if rows else ""


def toy_attention_markdown(bench: Path | None = None) -> str:
    """Attention mass inside the named object's box on the toy set, against uniform attention."""
    data = read_json((bench or bench_root()) / "toy_attention.json")
    rows = []
    for model in ("show_attend_tell", "transformer"):
        m = data[model]
        rows.append([model, m["objects_named"], f"{100 * m['attention_in_box_mean']:.1f}",
                     f"{100 * m['uniform_attention_in_box_mean']:.1f}", m["captions_equal_to_a_reference"],
                     m["test_images"]])  # fmt: skip
    header = ["model", "objects named", "attention in box %", "uniform attention in box %", "exact captions", "images"]
    table = markdown_table(header, rows)
    if all("attention_in_box_shape_word_mean" in data[m] for m in ("show_attend_tell", "transformer")):
        by_word = [[m, f"{100 * data[m]['attention_in_box_colour_word_mean']:.1f}",
                    f"{100 * data[m]['attention_in_box_shape_word_mean']:.1f}",
                    *(f"{data[m]['entropy_by_word_class'].get(c, {}).get('mean_entropy', float('nan')):.2f}"
                      for c in ("colour", "shape", "other"))] for m in ("show_attend_tell", "transformer")]  # fmt: skip
        table += "\n\n" + markdown_table(["model", "in box at the colour word %", "in box at the shape word %",
                                           "entropy: colour words", "shape words", "other words"], by_word)  # fmt: skip
    return table


def toy_attention_heads_markdown(bench: Path | None = None) -> str:
    """The transformer's in-box share (colour and shape word) and attention entropy per decoder layer and head on
    the toy set; empty if the benchmark predates the per-head measures."""
    data = read_json((bench or bench_root()) / "toy_attention.json")["transformer"]
    if "per_head_in_box" not in data:
        return ""
    entropy = {(e["layer"], e["head"]): e for e in data["per_head_entropy"]}
    rows = [[h["layer"], h["head"], f"{100 * h['colour_word']:.1f}", f"{100 * h['shape_word']:.1f}",
             *(f"{entropy[(h['layer'], h['head'])].get(c, float('nan')):.2f}" for c in ("colour", "shape", "other"))]
            for h in data["per_head_in_box"]]  # fmt: skip
    header = ["layer", "head", "in box at the colour word %", "in box at the shape word %", "entropy: colour",
              "shape", "other"]  # fmt: skip
    return markdown_table(header, rows)


def attention_entropy_table(root: Path | None = None) -> str:
    """Per analysed run with attention over the grid (its first seed): the normalised entropy of the attention
    behind its greedy test words, function against content words (1 is uniform over the 49 cells)."""
    rows = []
    for name, runs in caption_result_runs(root).items():
        reading = read_json(runs[0] / "examples.json").get("attention_entropy")
        if not reading:
            continue
        c = reading["by_word_class"]
        cells = [f"{c[k]['mean_entropy']:.3f} ({c[k]['words']})" if k in c else "-" for k in ("content", "function")]
        gap = c["function"]["mean_entropy"] - c["content"]["mean_entropy"] if len(c) == 2 else float("nan")
        rows.append([name, reading["images"], *cells, f"{gap:+.3f}"])
    header = ["run", "test images", "content words: entropy (words)", "function words: entropy (words)",
              "function - content"]  # fmt: skip
    return markdown_table(header, rows) if rows else ""


def side_by_side_captions_markdown(
    references: dict[str, list[str]] | None = None, images: int = 6, seed: int = 0, root: Path | None = None
) -> str:
    """Every analysed run's test caption (its first seed) of the same ``images`` test images drawn at random (not
    the best or worst), with each caption's CIDEr-D (x100) and, given ``references``, the first two references."""
    import csv
    import random

    runs = {
        name: folders[0]
        for name, folders in caption_result_runs(root).items()
        if (folders[0] / "per_image.csv").is_file()
    }  # runs analysed before per-image scores were stored: none
    captions: dict[str, dict[str, tuple[str, float]]] = {}
    for name, folder in runs.items():
        with (folder / "per_image.csv").open() as f:
            captions[name] = {r["image"]: (r["caption"], float(r["cider"])) for r in csv.DictReader(f)}
    if not captions:
        return ""
    common = sorted(set.intersection(*(set(c) for c in captions.values())))
    picked = random.Random(seed).sample(common, min(images, len(common)))
    rows = []
    for image in picked:
        cells = [f"{captions[n][image][0]} ({100 * captions[n][image][1]:.0f})" for n in runs]
        refs = "<br>".join((references or {}).get(image, [])[:2]) or "-"
        rows.append([image, *cells, refs])
    return markdown_table(["image", *runs, "references (first two)"], rows)


def caption_data_overview(data_dir: Path, min_count: int = 5, samples: int = 3) -> tuple[str, Figure]:
    """Split sizes, caption lengths, vocabulary size and coverage; a figure with sample images and references."""
    import warnings

    from lit_mc.captioning.annotations import load_annotations
    from lit_mc.captioning.encoder import load_image
    from lit_mc.captioning.vocab import Vocabulary, clean_caption

    text = data_dir / "Flickr8k_text"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ann = load_annotations(data_dir / "Images", text / "Flickr8k.token.txt", text, None)
    words = {n: [clean_caption(c) for c in caps] for n, caps in ann.captions.items()}
    vocab = Vocabulary.build((c for n in ann.splits["train"] for c in words[n]), min_count)
    known = set(vocab.words)
    rows = []
    for split, names in ann.splits.items():
        caps = [c for n in names for c in words[n]]
        tokens = [w for c in caps for w in c]
        lengths = sorted(len(c) for c in caps)
        coverage = sum(w in known for w in tokens) / len(tokens)
        rows.append([split, len(names), len(caps), f"{sum(lengths) / len(lengths):.1f}", lengths[len(lengths) // 2],
                     lengths[int(0.95 * len(lengths))], f"{100 * coverage:.2f}"])  # fmt: skip
    table = markdown_table(["split", "images", "captions", "mean words", "median", "95th percentile",
                            f"tokens in vocabulary % (min_count {min_count})"], rows)  # fmt: skip
    fig = Figure(figsize=(12, 3.2 * samples))
    axes = fig.subplots(samples, 2, squeeze=False, gridspec_kw={"width_ratios": [1, 2.2]})
    for ax_image, ax_text, name in zip(axes[:, 0], axes[:, 1], ann.splits["test"][:samples], strict=True):
        ax_image.imshow(load_image(data_dir / "Images" / name, 224).permute(1, 2, 0).numpy())
        ax_text.text(0, 0.5, "\n".join(ann.captions[name]), va="center", fontsize=9, wrap=True)
        for ax in (ax_image, ax_text):
            ax.axis("off")
        ax_image.set_title(name, fontsize=8)
    fig.tight_layout()
    return table + f"\n\nVocabulary: {len(vocab)} entries (4 special tokens).", fig


def read_per_image(model: str, root: Path | None = None) -> dict[str, dict[str, float]]:
    """``image -> {cider, bleu4}`` of a model's test captions (``results/flickr8k/<model>/per_image.csv``). A model
    with seed folders gives each image's mean over its seeds (a comparison over images then holds the seed noise
    of each image's score at a third of one seed's); ``model/seedK`` names one seed."""
    import csv

    flickr = (root or results_root()) / "flickr8k"
    runs = [flickr / model] if (flickr / model / "per_image.csv").is_file() else caption_result_runs(root).get(model)
    if not runs or not all((run / "per_image.csv").is_file() for run in runs):
        raise LitMcError(f"result file {flickr / model / 'per_image.csv'} does not exist",
                         "run python -m lit_mc.report.caption_runs on the run")  # fmt: skip
    seeds = []
    for run in runs:
        with (run / "per_image.csv").open() as f:
            seeds.append({r["image"]: (float(r["cider"]), float(r["bleu4"])) for r in csv.DictReader(f)})
    images = set.intersection(*(set(s) for s in seeds))
    return {i: {"cider": sum(s[i][0] for s in seeds) / len(seeds), "bleu4": sum(s[i][1] for s in seeds) / len(seeds)}
            for i in sorted(images)}  # fmt: skip


def paired_difference(model: str, against: str, metric: str, root: Path | None = None) -> dict[str, float]:
    """``model`` minus ``against`` on the same test images: the mean per-image ``metric`` difference with its 95%
    paired-bootstrap interval and p-value (10,000 resamples of the images), and both runs' means."""
    from lit_mc.studies.stats import paired_bootstrap

    mine, base = read_per_image(model, root), read_per_image(against, root)
    images = sorted(set(mine) & set(base))
    if len(images) != len(base) or len(images) != len(mine):
        raise LitMcError(f"{model} and {against} were tested on different images", "test both on one split")
    result = paired_bootstrap([mine[i][metric] for i in images], [base[i][metric] for i in images])
    return {**result, "images": len(images), "model_mean": sum(mine[i][metric] for i in images) / len(images),
            "against_mean": sum(base[i][metric] for i in images) / len(images)}  # fmt: skip


def _interval(r: dict[str, float]) -> str:
    return f"{100 * r['mean']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"


def _p_value(r: dict[str, float]) -> str:
    """A bootstrap p-value; 0 (no resampled mean across zero) is written as below the smallest it can resolve."""
    return f"{r['p']:.3g}" if r["p"] > 0 else f"< {2 / r['resamples']:g}"


def paired_comparison_markdown(models: Sequence[str], against: str, root: Path | None = None) -> str:
    """Each model minus ``against`` on the same test images: mean per-image CIDEr-D and BLEU-4 difference (x100)
    with its 95% paired-bootstrap interval and p-value (10,000 resamples of the images)."""
    rows = []
    for model in models:
        cider, bleu4 = (paired_difference(model, against, m, root) for m in ("cider", "bleu4"))
        rows.append([model, str(cider["images"]), _interval(cider), _p_value(cider), _interval(bleu4),
                     _p_value(bleu4)])  # fmt: skip
    header = [
        "model",
        "images",
        f"CIDEr-D - {against} [95% CI]",
        "p",
        f"sentence BLEU-4 (mean per image) - {against} [95% CI]",
        "p",
    ]  # not the corpus BLEU-4 of the tables
    return markdown_table(header, rows)


def scst_start(run: Path) -> str | None:
    """The result name (``model/seedK``) of the cross-entropy seed an SCST result folder started from, read from its
    run's ``config.yaml`` (``model.init_args.init_from``: ``.../flickr8k_<model>_s<K>/version_N/checkpoints/...``)."""
    import re

    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    start = str(((config.get("model") or {}).get("init_args") or {}).get("init_from") or "")
    found = re.search(r"flickr8k_(\w+?)_s(\d+)/", start)
    return f"{found.group(1)}/seed{found.group(2)}" if found else None


def best_validation_seed(model: str, root: Path | None = None) -> str:
    """The result name (``model/seedK``) of the model's seed with the highest validation CIDEr at any epoch (from
    the analysed seeds' copied ``metrics.csv``): the seed SCST starts from unless told otherwise."""
    from lit_mc.runs import read_metrics_csv

    def best(run: Path) -> float:
        return max(r["val_cider"] for r in read_metrics_csv(run / "metrics.csv") if "val_cider" in r)

    runs = [r for r in caption_result_runs(root).get(model, []) if r.name.startswith("seed")]
    if not runs:
        raise LitMcError(f"no analysed seed of {model} in {(root or results_root()) / 'flickr8k' / model}",
                         "run its seeds first (python -m lit_mc.campaigns.flickr8k)")  # fmt: skip
    return f"{model}/{max(runs, key=best).name}"


def scst_runs(root: Path | None = None) -> dict[str, str]:
    """``SCST result name -> the cross-entropy seed it started from`` (``model/seedK``): ``<model>_scst`` and its
    variants (``<model>_scst_<variant>``, e.g. another reward baseline)."""
    found = {name: scst_start(runs[0]) for name, runs in caption_result_runs(root).items() if "_scst" in name}
    return {name: start for name, start in found.items() if start is not None}


def scst_comparison_markdown(root: Path | None = None) -> str:
    """Each SCST run against the cross-entropy seed it started from, on the same test images: both runs' per-image
    mean CIDEr-D and BLEU-4 (x100) at their validation-chosen decoding, and the difference with its 95%
    paired-bootstrap interval."""
    rows = []
    for name, start in scst_runs(root).items():
        cells = [name, start]
        for metric in ("cider", "bleu4"):
            r = paired_difference(name, start, metric, root)
            cells += [f"{100 * r['against_mean']:.1f} -> {100 * r['model_mean']:.1f}", _interval(r)]
        rows.append(cells)
    header = ["SCST run", "started from", "CIDEr-D (XE -> SCST)", "difference [95% CI]",
              "sentence BLEU-4, mean per image (XE -> SCST)", "difference [95% CI]"]  # fmt: skip
    return markdown_table(header, rows) if rows else ""


# -- the campaign's layout: results/flickr8k/<name>/ (one run) or results/flickr8k/<name>/seed<k>/ (several) --------
def caption_result_runs(root: Path | None = None) -> dict[str, list[Path]]:
    """``name -> result folders`` of every analysed captioning run: its ``seed*/`` folders (one per seed) when it
    has any, else ``<name>/`` itself when it holds one run's ``examples.json`` (the first round's single runs stay
    beside their seeds until the seeds replace them), in name order."""
    root = (root or results_root()) / "flickr8k"
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        seeds = sorted(p for p in folder.glob("seed*") if (p / "examples.json").is_file())
        runs = seeds or ([folder] if (folder / "examples.json").is_file() else [])
        if runs:
            found[folder.name] = runs
    return found


def _tested_scores(run: Path) -> tuple[int, dict[str, float]]:
    """The analysed beam size of a result folder and its test scores at that beam."""
    beam = int(read_json(run / "examples.json").get("beam", 1))
    return beam, read_json(run / "test_metrics.json")[f"beam{beam}"]


def _mean_sd(values: Sequence[float], scale: float = 100.0) -> str:
    import statistics

    if len(values) == 1:
        return f"{scale * values[0]:.1f}"
    return f"{scale * statistics.mean(values):.1f} ± {scale * statistics.stdev(values):.1f}"


def caption_seed_table(root: Path | None = None) -> str:
    """Test scores (x100) of every analysed run at its analysed decoding: mean ± sample sd over its seeds, with the
    decoding (chosen on validation where ``decoding.json`` says so), parameters and FLOPs per caption."""
    rows = []
    for name, runs in caption_result_runs(root).items():
        scores = [_tested_scores(run) for run in runs]
        beams = sorted({beam for beam, _ in scores})
        chosen = {
            run.name: read_json(run / "decoding.json")["best"] for run in runs if (run / "decoding.json").is_file()
        }
        groups: dict[str, list[str]] = {}  # each seed's own choice: one decoding, or which seeds chose which
        for seed, best in chosen.items():
            groups.setdefault(f"beam {best['beam_size']} / penalty {best['length_penalty']:g}", []).append(seed)
        decoding = "; ".join(f"{d} ({', '.join(who)})" if len(groups) > 1 else d for d, who in groups.items())
        decoding = (
            f"{decoding} (validation)" if chosen else ", ".join("greedy" if b == 1 else f"beam {b}" for b in beams)
        )
        size = read_json(runs[0] / "examples.json").get("size") or {}
        params = f"{size['params'] / 1e6:.2f}M ({size['trained_params'] / 1e6:.2f}M trained)" if size else "-"
        flops = f"{size['mflops_per_caption']:.1f}" if size else "-"
        cells = [_mean_sd([s[m] for _, s in scores]) for m in CAPTION_METRICS if all(m in s for _, s in scores)]
        # a captioner's single run from before the seeded campaign (SCST and prefix-LM rows are single by design)
        first_round = name in CAPTIONERS and not runs[0].name.startswith("seed")
        rows.append([name + (" (first round)" if first_round else ""), len(runs), decoding, *cells, params, flops])
    header = ["run", "seeds", "decoding", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L",
              "CIDEr", "parameters", "MFLOPs / caption"]  # fmt: skip
    return markdown_table(header, rows)


def training_cost_table(models: Sequence[str], root: Path | None = None) -> str:
    """What each analysed run cost and scored: parameters (and how many trained), training wall minutes on this
    machine (run start to last checkpoint, recorded by the analysis; "-" for runs trained on an earlier machine),
    and test CIDEr (x100, mean ± sd over seeds) at its analysed decoding."""
    runs = caption_result_runs(root)
    rows = []
    for name in [m for m in models if m in runs]:
        examples = [read_json(run / "examples.json") for run in runs[name]]
        size = examples[0].get("size") or {}
        minutes = [e["training_wall_minutes"] for e in examples if e.get("training_wall_minutes")]
        timed = "-"
        if minutes:
            some = f" ({len(minutes)} of {len(runs[name])} runs)" if len(minutes) < len(runs[name]) else ""
            timed = f"{sum(minutes) / len(minutes):.0f}{some}"
        rows.append([name, len(runs[name]), f"{size['params'] / 1e6:.2f}M" if size else "-",
                     f"{size['trained_params'] / 1e6:.2f}M" if size else "-", timed,
                     _mean_sd([_tested_scores(run)[1]["cider"] for run in runs[name]])])  # fmt: skip
    header = ["run", "runs", "parameters", "trained", "training wall minutes (this machine)", "test CIDEr"]
    return markdown_table(header, rows)


def caption_diversity_table(root: Path | None = None) -> str:
    """How varied the test captions of each run are and how much they copy the training captions (the first seed's
    analysis), and mean per-image CIDEr-D (x100) by the length of the images' references (short to long thirds)."""
    rows = []
    for name, runs in caption_result_runs(root).items():
        summary = read_json(runs[0] / "examples.json")
        d, by_length = summary.get("diversity"), summary.get("cider_by_reference_length") or []
        if d is None:
            continue
        lengths = " / ".join(f"{100 * g['mean_cider']:.0f}" for g in by_length) or "-"
        shares = (d["distinct_share"], d["copied_from_training_share"])
        rows.append([name, d["captions"], *(f"{100 * x:.1f}" for x in shares), d["vocabulary_used"],
                     f"{100 * d['repeated_bigram_share']:.1f}", f"{100 * d['unk_word_share']:.2f}",
                     f"{d['mean_length']:.1f}", lengths])  # fmt: skip
    header = ["run", "captions", "distinct %", "copied from training %", "words used", "repeat a bigram %",
              "<unk> %", "mean words", "CIDEr by reference length (short / mid / long)"]  # fmt: skip
    return markdown_table(header, rows)


def overfit_captioning_markdown(bench: Path | None = None, captions: int = 2) -> str:
    """The overfit-one-batch test of each captioner on real Flickr8k pictures: cross-entropy first and last, how many
    of the batch's greedy captions are one of their references word for word, and a few of them."""
    results = read_json((bench or bench_root()) / "overfit_captioning.json")
    rows, shown = [], []
    for r in results:
        rows.append([r["model"], r["pairs"], r["steps"], f"{r['first_ce']:.2f}", f"{r['final_ce']:.3f}",
                     f"{r['memorised']} of {r['images']}", f"{r['wall_s']:.0f}"])  # fmt: skip
        for c in r["captions"][:captions]:
            shown.append([r["model"], c["image"], c["caption"], "yes" if c["memorised"] else "no",
                          "<br>".join(c["references"])])  # fmt: skip
    header = ["model", "pairs in the batch", "steps", "first cross-entropy", "last", "captions memorised", "seconds"]
    table = markdown_table(header, rows)
    return table + "\n\n" + markdown_table(["model", "image", "greedy caption", "a reference?", "references"], shown)


def overfit_captioning_figure(bench: Path | None = None) -> Figure:
    """The per-step training cross-entropy of each captioner on its one overfit batch (log scale)."""
    results = read_json((bench or bench_root()) / "overfit_captioning.json")
    fig = Figure(figsize=(6.5, 3.4))
    ax = fig.subplots()
    for i, r in enumerate(results):
        curve = r["curve"]["train_ce"]
        ax.plot(range(1, len(curve) + 1), curve, color=f"C{i}", label=r["model"])
    ax.set_yscale("log")
    ax.set_xlabel("step (the same batch every step)")
    ax.set_ylabel("training cross-entropy (nats / word)")
    ax.set_title(f"Overfitting one Flickr8k batch ({results[0]['pairs']} caption pairs)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig
