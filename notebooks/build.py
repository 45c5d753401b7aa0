"""Write the report notebooks from the cell lists below, and (``--execute``) run them so their outputs are saved.

The notebook sources live here, as plain Python strings, so a change to a notebook is a readable diff; the logic
they call lives in ``lit_mc.report``. ``make notebooks`` = ``python notebooks/build.py --execute``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lit_mc.report import STUDY_ORDER

HERE = Path(__file__).resolve().parent

SETUP = """\
import os
import warnings
from pathlib import Path
from IPython.display import Image, Markdown, display
warnings.filterwarnings("ignore")
from lit_mc import report

os.chdir(os.environ.get("LIT_MC_REPO", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
RESULTS, BENCH = report.results_root(), report.bench_root()
show = lambda text: display(Markdown(text))
show_fig = lambda fig: display(Image(data=report.figure_png(fig)))
print("results:", RESULTS.resolve(), "| benchmarks:", BENCH.resolve())"""

# What each study's result means; written after reading the results, with no number typed in (the numbers are in
# the table and verdict printed above each reflection).
REFLECTIONS: dict[str, str] = {
    "learning_rate": """With plain SGD and only five epochs, accuracy rose with every step up the learning-rate grid: at
this budget the baseline is limited by how far it can move, not by instability. The hypothesis's first clause holds;
its second (the largest rate becomes unstable) does not, at least not before BatchNorm or momentum are involved.
The learning rate mattered more than any architectural change studied later.""",
    "batch_size": """With the learning rate fixed, smaller batches won clearly: at a fixed number of epochs they take
more steps. Scaling the learning rate linearly with the batch size made the batch sizes almost equivalent, as the
linear scaling rule predicts; what counts at this budget is roughly the number of steps times the step size.""",
    "lr_batch_size": """The heat map is not a clean diagonal: the best cells sit at the largest learning rate and the
smallest batches, so the number of updates (smaller batches) adds to the noise-scale picture at a fixed epoch
budget. Equal learning-rate-to-batch ratios do not give equal accuracy: in every such pair the smaller batch wins.
The expected cell beat the baseline setting, which supports the direction of the hypothesis more than its
strong form. The tuned baseline (lr 0.1, batch 64) is taken from this grid.""",
    "depth": """A fourth stage did not help, and two stages were at least as good as three: with 3,333 training
images, plain SGD and no normalisation, a deeper plain network is harder to optimise and has more to overfit with.
Depth pays with BatchNorm, residual connections and more data (VGG/ResNet conditions), none of which this budget
has; the verdict is inconclusive, not a refutation of the reference.""",
    "width": """Doubling the width helped in every fold, and halving it hurt on average: more filters per stage
is the cheapest capacity for plain SGD here, at four times the FLOPs of the baseline. Width is one of the
ingredients of the best model.""",
    "kernel_size": """Larger kernels did not help: 5x5 was level with 3x3 and 7x7 lower, at several times the FLOPs.
The receptive-field argument does not show at 32 px with three pooling stages, which already cover the image;
stacks of small kernels remain the better use of compute, as VGG argued.""",
    "pooling": """Max pooling came out ahead of both average pooling and strided convolutions in every fold, but with
three folds the paired test does not reach significance, so the verdict is inconclusive. Strided convolutions
learn their downsampling, which needs more data and training than this budget gives (the all-convolutional net
trained far longer with augmentation).""",
    "dropout": """Dropout in the fully connected head did not help: 0.5 was slightly but significantly worse and 0.25
level. With fifteen epochs of plain SGD the model is still fitting, and the head holds a small share of the
parameters; dropout trades fitting speed for generalisation, which only pays once a model overfits strongly.""",
    "augmentation": """Horizontal flips helped in every fold; vertical flips hurt in every fold, as expected for photos
with a sky at the top. Crops, cutout and contrast did not help at fifteen epochs, and stacking all of them hurt most:
each makes the training task harder, and a short budget spends its steps on the harder task instead of on fitting.
Augmentation is regularisation, and it pays once training runs long enough to overfit; at this budget only the
cheapest, label-preserving transformation (the mirror image) paid. Horizontal flips go into the best model.""",
    "batch_norm": """BatchNorm raised the mean accuracy by the largest margin of any single change, but the
fold-to-fold spread was large too, so with three folds the paired test is inconclusive. The three-times-larger
learning rate with BatchNorm did not beat the tuned one: BatchNorm tolerated it (no divergence) rather than
profiting from it here. BatchNorm goes into the best model, where it also stabilises the wider network.""",
    "weight_init": """N(0, 0.01) barely left chance level, as Glorot and He predict for an initialisation blind to the
fan-in: the signal shrinks layer by layer and so do the gradients. The second half of the hypothesis failed in an
instructive way: He (Kaiming-normal) initialisation diverged within the first batches at the tuned learning rate
(the study records it as a diverged setting, measured at chance). PyTorch's default initialisation is about
2.4 times smaller in scale than He's, and the learning rate was tuned with it: initialisation and learning rate
are tuned together, and without BatchNorm nothing absorbs the mismatch.""",
    "optimizer": """Adam at its default rate beat the tuned plain SGD in every fold and momentum at the same effective
step helped a little: at a short budget, per-parameter step sizes and momentum both speed up progress on the
ill-conditioned loss surface. Whether Adam also generalises better with long training (Wilson et al. argue it
often does not) is outside this budget. Adam goes into the best model.""",
    "transfer_learning": """ImageNet features transfer: fine-tuning the pretrained EfficientNet-Lite0 was by far the
best setting of all the studies, the frozen feature extractor came second, and the same network from random
initialisation, far too large for 3,333 images and five epochs, was worst. Fine-tuning beat freezing because
CIFAR-10's small, upsampled images differ from ImageNet photos, so the later blocks profit from adapting. It was
also the most expensive setting per image; the best model below stays with the small CNN, whose cost this
machine can afford on the full training set.""",
    "best_model": """The four changes that helped one at a time (width, BatchNorm, horizontal flips, Adam) together beat
the tuned baseline in every fold by more than any one of them did alone: their effects add up rather than
overlap. This study is also the best model's cross-validation error bar at the studies' budget.""",
}

CIFAR_CELLS: list[tuple[str, str]] = [
    (
        "md",
        """\
# CIFAR-10: a baseline CNN, its tuning, and thirteen hypotheses

Every table and figure below is computed from stored results (`results/`, `benchmarks/results/`); nothing here
trains a model. The commands that produced each result are in the README; each study file in
`configs/studies/` states its hypothesis, reference and budget.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## 1. Task and data

CIFAR-10: 50,000 training and 10,000 test images of 32x32 pixels in ten balanced classes. The baseline trains on
a stratified 45,000 / 5,000 train/validation split; the studies use stratified k-fold splits of a stratified
subset. Below: the class balance and channel statistics of the training set and a sample of each class (when the
data is present, else the cell says so).""",
    ),
    (
        "code",
        """\
from lit_mc.data.cifar10 import default_data_dir, load_cifar10
from lit_mc.data.eda import channel_stats, class_counts, sample_grid
try:
    arrays = load_cifar10(default_data_dir())
except Exception as e:  # the notebook still renders without the data
    arrays = None
    print("CIFAR-10 not available here:", e)
if arrays is not None:
    counts = class_counts(arrays.train_labels, arrays.class_names)
    mean, std = channel_stats(arrays.train_images)
    show(report.markdown_table(["class", "training images"], counts.items()))
    show(f"Channel mean (R, G, B): {', '.join(f'{m:.4f}' for m in mean)}; std: {', '.join(f'{s:.4f}' for s in std)}")
    show_fig(sample_grid(arrays.train_images, arrays.train_labels, arrays.class_names, per_class=8))""",
    ),
    (
        "md",
        """\
## 2. Metrics, and why

The classes are balanced, so **accuracy** is a fair headline number; **macro-F1** (the mean of the per-class F1)
would expose a model that buys accuracy on easy classes with recall on hard ones, and **per-class accuracy** and
the **confusion matrix** show which classes are confused. Validation metrics choose checkpoints and settings; the
test set is used once per final model. Every comparison between settings is paired over the same folds and judged
with a paired t-test, because fold-to-fold variation is larger than many of the effects studied.""",
    ),
    (
        "md",
        """\
## 3. The baseline

Three conv layers (32-64-128, 3x3, ReLU, 2x2 max-pool) and one hidden FC layer of 256, plain SGD (lr 0.01,
batch 64, no momentum, no regularisation), 20 epochs on 45,000 images (`make train`).""",
    ),
    (
        "code",
        """\
baseline = RESULTS / "cifar10" / "baseline"
show_fig(report.run_curves_figure(baseline / "metrics.csv", "baseline"))
show(report.test_report_markdown(report.read_json(baseline / "test_metrics.json")))""",
    ),
    (
        "md",
        """\
**Overfitting one batch** (`python benchmarks/overfit_one_batch.py`): a model that cannot memorise 64 images
has a bug; every model here can.""",
    ),
    ("code", "show(report.overfit_markdown(report.read_json(BENCH / 'overfit_one_batch.json')))"),
    (
        "md",
        """\
## 4. The statistical error of the baseline: 5-fold cross-validation

`lit-mc cv --config configs/cifar10/baseline.yaml --folds 5`: the same config on five stratified folds (40,000 /
10,000 each).""",
    ),
    ("code", "show(report.cv_markdown(report.read_json(RESULTS / 'cv' / 'baseline' / 'summary.json')))"),
    (
        "md",
        """\
## 5. Studies

Each study below is hypothesis (with its reference) -> experiment (settings x folds at a stated budget) -> result
(learning curves: validation solid, training dashed; the metric per setting with its 95% t-interval, folds as grey
dots) -> verdict (the expectation's setting against the reference setting, paired t-test over the folds) ->
reflection. Studies 1-3 tune the learning rate and batch size of plain SGD (5 epochs on a 20% subset); studies
4-12 vary one thing of the tuned baseline (lr 0.1, batch 64) at 15 epochs on a 10% subset, where a small model
overfits and regularisers can show; study 13 is transfer learning.""",
    ),
    (
        "code",
        """\
studies = report.available_studies(RESULTS)
reports = {name: report.load_study(name, RESULTS) for name in studies}
def show_study(name):
    rep = reports[name]
    show(f"### Study: {name}")
    show(report.study_markdown(rep))
    for fig in report.study_figures(rep, report.study_cells(rep, RESULTS)).values():
        show_fig(fig)
print("studies with results:", ", ".join(studies))""",
    ),
    *[
        cell
        for name in STUDY_ORDER
        for cell in (
            ("code", f"show_study({name!r}) if {name!r} in reports else print('no results for study {name}')"),
            ("md", f"**Reflection ({name}).** " + REFLECTIONS.get(name, "")),
        )
    ],
    (
        "md",
        """\
## 6. Compute spent per study

Wall time of every cell on this 2-core CPU (cells shared between studies are counted in each).""",
    ),
    ("code", "show(report.compute_table(list(reports.values())))"),
    (
        "md",
        """\
## 7. The best model

The combination the studies support, trained on the full 45,000-image training split and tested once (see
README for its config and command).""",
    ),
    (
        "code",
        """\
best = RESULTS / "cifar10" / "best"
if (best / "test_metrics.json").is_file():
    show_fig(report.run_curves_figure(best / "metrics.csv", "best model"))
    metrics = report.read_json(best / "test_metrics.json")
    show(report.test_report_markdown(metrics))
    show_fig(report.confusion_figure(metrics))
    if (best / "cv_summary.json").is_file():
        show("Its cross-validation error (the studies' budget, 3 folds):")
        show(report.cv_markdown(report.read_json(best / "cv_summary.json")))
else:
    print("no best-model results in", best)""",
    ),
    (
        "md",
        """\
## 8. Conclusions

- **What helped**: the learning rate above all (plain SGD at the default rate is far from its best at any short
  budget); smaller batches at a fixed rate, or equivalently a rate scaled with the batch; wider conv stages;
  horizontal flips; BatchNorm (largest mean gain, noisy over three folds); and, combined, the best model, whose
  test accuracy is above the baseline's (section 7 against section 3).
- **What did not, at this budget**: more depth, larger kernels, average pooling or strided convolutions, dropout
  in the head, crops, cutout, contrast and vertical flips. Several of these are known to help with longer training
  and more data; the studies measured a 15-epoch, 3,333-image regime, and their verdicts are about that regime.
- **How sure we are**: every comparison is paired over three folds, which detects effects of a few points but
  leaves several mean differences "inconclusive"; the baseline's own 5-fold error shows how small the fold-to-fold
  spread is at full data, and how much larger it is on the studies' small subsets.
- **Cost**: the compute table above is the real price of each answer on two CPU cores.""",
    ),
]


CAPTION_CELLS: list[tuple[str, str]] = [
    (
        "md",
        """\
# Flickr8k: image captioning with and without attention

Three captioners on the official Flickr8k split (6,000 / 1,000 / 1,000 images, five captions each), all reading the
same frozen ImageNet EfficientNet-Lite0 features (a 7x7 grid of 1280-d vectors at 224 px, cached once). Every
number and figure below comes from stored results (`results/flickr8k/`, `benchmarks/results/`) or from a
checkpoint; nothing trains here.""",
    ),
    ("code", SETUP),
    (
        "md",
        """\
## 1. Data

Caption lengths, how much of each split the training vocabulary covers, and three test images with their five
references.""",
    ),
    (
        "code",
        """\
data = Path(os.environ.get("LIT_MC_FLICKR8K", "data/flickr8k"))
if (data / "Flickr8k_text").is_dir():
    table, fig = report.caption_data_overview(data)
    show(table)
    show_fig(fig)
else:
    print("Flickr8k not available here:", data)""",
    ),
    (
        "md",
        """\
## 2. The three architectures

- **Show and Tell** (Vinyals et al. 2015), the baseline: the 49 grid vectors are averaged into one image vector
  that sets the LSTM's initial state; the decoder never looks at the image again.
- **Show, Attend and Tell** (Xu et al. 2015), soft attention: at every word, additive attention over the 49 cells
  forms a context vector (gated by `f_beta`) that joins the word embedding as the LSTM input; the doubly
  stochastic regulariser asks every cell to be looked at over the caption.
- **Transformer captioner**: two pre-norm decoder layers (causal self-attention, cross-attention to the projected
  grid, feed-forward), four heads, width 256.

All three: teacher-forced cross-entropy with padding masked, Adam, the vocabulary of the training captions (words
seen at least five times) stored in every checkpoint, greedy and batched beam-search decoding.

**Overfitting one batch**: `tests/test_captioning.py::test_overfit_one_batch_memorises_its_captions` trains each
model with `--trainer.overfit_batches=1` on 16 toy images and asserts that the cross-entropy falls below 0.05 and
that greedy decoding gives back every training caption word for word; it runs in CI.""",
    ),
    (
        "md",
        """\
## 3. Training curves

Each run trains up to 15 epochs and stops early when validation CIDEr (greedy, 1,000 dev images) has not improved
for two epochs; the checkpoint with the best validation CIDEr is the one tested.""",
    ),
    ("code", "show_fig(report.caption_curves_figure(RESULTS))\nshow(report.caption_training_summary(RESULTS))"),
    (
        "md",
        """\
## 4. Test scores: greedy and beam search

BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap) on the 1,000 official test images, each generated caption
against its five references; the published Show-Attend-Tell numbers (VGG encoder, beam search) for reference.""",
    ),
    ("code", "show(report.caption_metric_table(RESULTS))"),
    (
        "md",
        """\
**Reading the table.** With beam search, soft attention (Show, Attend and Tell) scores highest on every metric
(the line under the training summary is computed from these files); with greedy decoding it leads on all but
BLEU-1, where Show and Tell is level. Looking at the image at every word beats summarising it once, which is the
comparison the study is about. A beam of three improves every model over greedy decoding on BLEU-4 and CIDEr; a
beam of five is no better than three. The transformer is the weakest of the three: trained from scratch on 30,000
pairs without the LSTM's recurrence, it peaked earliest on validation CIDEr, so at this data size the recurrent
decoders win. Show-Attend-Tell is above the published soft-attention BLEU-2..4 and METEOR and
below its BLEU-1; the encoder (EfficientNet-Lite0, not VGG), the vocabulary and the evaluation code differ, so
that comparison is indicative only.""",
    ),
    (
        "md",
        """\
## 5. Where the models look

Greedy captions of the test images that scored best and worst (per-image CIDEr), with the attention of every word
drawn over the picture (`lit_mc.captioning.attention.attention_figure`, the same function the training callback
uses). Show and Tell has no attention to draw.""",
    ),
    (
        "code",
        """\
for model in ("show_attend_tell", "transformer", "show_and_tell"):
    folder = RESULTS / "flickr8k" / model
    if not (folder / "examples.json").is_file():
        print("no examples for", model)
        continue
    for kind in ("best", "worst"):
        show(f"### {model}: {kind}-scored test captions")
        show(report.caption_examples_markdown(model, kind, RESULTS))
        for png in sorted((folder / kind).glob("row=*.png"))[:2]:
            display(Image(filename=str(png)))""",
    ),
    (
        "md",
        """\
**Error analysis.** The worst-scored captions are fluent but describe the wrong activity or scene (a generic
"man in a shirt", "playing basketball" for a karate pose): the model falls back on the most frequent subjects and
verbs of the training captions when the image is unusual. Rare words become `<unk>` (words seen fewer than five
times are not in the vocabulary).

## 6. Measuring attention: the toy shapes set

On a synthetic set whose object boxes are known (two coloured shapes per image, captions such as "a red circle
left of a blue square"), the share of attention mass inside the box of the object being named, while its colour
and shape words are produced, against what uniform attention would score
(`python benchmarks/toy_attention.py`).""",
    ),
    (
        "code",
        """\
if (BENCH / "toy_attention.json").is_file():
    show(report.toy_attention_markdown(BENCH))
    for png in sorted(BENCH.glob("toy_attention_*_0.png")):
        display(Image(filename=str(png)))
else:
    print("no toy attention results in", BENCH)""",
    ),
]


def build(cells: list[tuple[str, str]], path: Path) -> None:
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def execute(path: Path, timeout: int = 600) -> float:
    """Run every cell (outputs saved in the file); returns the seconds it took."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}).execute()
    nbformat.write(nb, path)
    return time.perf_counter() - start


NOTEBOOKS = {"01_cifar10_study.ipynb": CIFAR_CELLS, "02_flickr8k_captioning.ipynb": CAPTION_CELLS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run the notebooks and save their outputs")
    parser.add_argument("--out", default=str(HERE), help="folder for the .ipynb files (default notebooks/)")
    opts = parser.parse_args()
    for name, cells in NOTEBOOKS.items():
        path = Path(opts.out) / name
        build(cells, path)
        if opts.execute:
            print(f"{name}: executed in {execute(path):.0f} s")


if __name__ == "__main__":
    main()
