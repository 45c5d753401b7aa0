# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "skip"}
# The slides of the CIFAR-10 study, for the short talk: `make slides` runs this file on the stored results and
# exports one reveal.js deck (`slides/01_cifar10.slides.html`, code hidden). Every number is read from its results
# file (`lit_mc.report.Facts`), as in the study notebook, which holds the full story.

# %% slideshow={"slide_type": "skip"}
import os
import warnings
from pathlib import Path
import yaml
from IPython.display import Image, Markdown, display
from lit_mc import report
warnings.filterwarnings("ignore")

os.chdir(os.environ.get("LIT_MC_REPO", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
RESULTS, BENCH = report.results_root(), report.bench_root()
facts = report.Facts(RESULTS)
STUDY_FILES = Path(os.environ.get("LIT_MC_STUDIES", "configs/studies"))
show = lambda text: display(Markdown(text))
show_fig = lambda fig, width=720: display(Image(data=report.figure_png(fig), width=width))
reports = {name: report.load_study(name, RESULTS) for name in report.available_studies(RESULTS)}
current = {n: report.stored_at_current_budget(r, STUDY_FILES / f"{n}.yaml") for n, r in reports.items()}

# %% [markdown] slideshow={"slide_type": "slide"}
# # CIFAR-10 with plain SGD
# ## How far does a small CNN get, how should SGD be tuned, and which textbook changes help?
#
# - A baseline CNN (a few conv + FC layers), plain SGD: no momentum, no regularisation, no BatchNorm
# - Learning rate and batch size tuned on a hand-set grid, on all training data
# - Hypotheses: depth, width, kernel size, pooling, dropout, augmentation, BatchNorm, init, Adam, transfer learning

# %%
done = sorted(n for n, ok in current.items() if ok)
show(f"Studies at their final budget so far: {', '.join(done) or 'none'}; the others are from an earlier round "
     "and carry no verdict here.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Setup

# %%
config = yaml.safe_load(Path("configs/cifar10/baseline.yaml").read_text())
net, model = config["model"]["init_args"]["model"]["init_args"], config["model"]["init_args"]
data = config["data"]["init_args"]
show(f"- **Data**: the CIFAR-10 training set with a stratified hold-out of {data['val_size']:,} images for validation;"
     " the test set used once per final model; images normalised by their training split's channel statistics\n"
     f"- **Baseline**: conv channels {net['channels']} ({net['kernel_size']}x{net['kernel_size']}, "
     f"{net['pooling']} pooling), FC {net['hidden']}; SGD lr {model['lr']}, batch {data['batch_size']}, "
     f"{config['trainer']['max_epochs']} epochs\n"
     "- **Statistics**: k-fold cross-validation; each claim judged by the Nadeau-Bengio corrected resampled t-test, "
     "Holm-adjusted over all claims; single runs are marked untested")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The baseline on all training data

# %%
baseline = RESULTS / "cifar10" / "baseline"
show_fig(report.run_curves_figure(baseline / "metrics.csv", "baseline.yaml: training and validation curves"), 960)
acc = facts.get("cifar10/baseline/test_metrics.json", "metrics", "test_acc")
noise = facts.get("cv/baseline/summary.json", "summary", "val_acc", "std", fmt="abs_points")
folds = facts.get("cv/baseline/summary.json", "folds", fmt="int")
show(f"Test accuracy **{acc}**; fold-to-fold std of validation accuracy {noise} over {folds} folds.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Sanity check: overfitting one batch
#
# A model that cannot memorise one batch has a bug (`benchmarks/overfit_one_batch.py`).

# %%
overfit = report.read_json(BENCH / "overfit_one_batch.json")
show(report.overfit_markdown(overfit))
if (fig := report.overfit_figure(overfit)) is not None:
    show_fig(fig, 880)

# %%
def study_slide(name, figure):
    if name not in reports:
        return show(f"No results for study {name} yet.")
    rep = reports[name]
    figures = report.study_figures(rep, report.study_cells(rep, RESULTS))
    if figure in figures:
        show_fig(figures[figure], 560)
    if not current[name]:
        return show("*Results of an earlier, smaller budget; the re-run is still to come.*")
    show(report.claims_markdown(rep))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Tuning: the learning rate
#
# Theory: too small is slow, too large is noisy or diverges; the best rate at a fixed budget lies below the largest
# stable one (Bengio 2012).

# %%
study_slide("learning_rate", "metric.png")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Tuning: the batch size
#
# Theory: at batches well below the critical size, what matters is the ratio lr / batch (Smith & Le 2018; Goyal et
# al. 2017).

# %%
study_slide("batch_size", "metric.png")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Tuning: learning rate x batch size

# %%
study_slide("lr_batch_size", "heatmap.png")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Hypotheses: one verdict per claim

# %%
from lit_mc.studies.study import adjust_study_set

rows, earlier = [], []
family = {r["name"]: r for r in adjust_study_set([r for n, r in reports.items() if current[n] and r.get("claims")])}
for name, rep in reports.items():
    if name in ("learning_rate", "batch_size", "lr_batch_size", "best_model"):  # the best model: its own slide
        continue
    if not current[name]:  # an earlier round's result: no verdict is shown for it
        earlier.append(name)
    for i, c in enumerate(rep.get("claims", []) if current[name] else []):
        rows.append([name, c["claim"], c["verdict"], family[name]["claims"][i]["verdict"]])
if earlier:
    rows.append([", ".join(earlier), "—", "earlier, smaller budget: no verdict; re-run planned", ""])
show(report.markdown_table(["study", "claim", "verdict (Holm within the study)", "over all claims (Holm)"], rows)
     if rows else "No hypothesis study has results yet.")
if "best_model" in family:  # one line: the table fills the slide
    verdicts = [(report.ablated_ingredient(c["claim"]), c["verdict"]) for c in family["best_model"]["claims"]]
    show(f"Best model's {len(verdicts)} ablations (next slide), over all claims: " + "; ".join(
        f"{v} {', '.join(n for n, w in verdicts if w == v)}" for v in sorted({w for _, w in verdicts})) + ".")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## The best model

# %%
progress_rows = (report.load_study_progress("best_model", RESULTS) or {}).get("rows", [])
full = progress_rows[0] if progress_rows else None
ablations = [len(r["values"]) for r in progress_rows[1:]], [r["repeats"] for r in progress_rows[1:]]
best_run = RESULTS / "cifar10" / "best_model" / "seed0"
best = RESULTS / "cifar10" / "best"
finished = "best_model" in reports and not progress_rows  # every seed of the recipe and of its ablations stored
RECIPE = ("FastNet (airbench94 at a quarter of its compute: BatchNorm, GELU, Nesterov momentum, label smoothing, "
          "flips and translations, lookahead, test-time augmentation), all training images, 8 epochs")
if finished:
    source = "studies/best_model/study.json"
    study = reports["best_model"]
    mean = facts.get(source, "rows", 0, "summary", "mean")
    gain = facts.derive("difference", mean, acc, fmt="points")
    show(f"{RECIPE}: test accuracy **{mean}**, mean of {study['rows'][0]['summary']['n']} seeds "
         f"({gain} over the baseline).")
    show(f"Each ingredient removed, {study['rows'][1]['summary']['n']} seeds each, minus the full recipe (points, "
         f"95% CI; Holm over the study's {len(study['claims'])} claims): " + "; ".join(
             f"{report.ablated_ingredient(c['claim'])} {100 * c['links'][0]['mean_difference']:+.1f} "
             f"[{100 * c['links'][0]['ci_low']:+.1f}, {100 * c['links'][0]['ci_high']:+.1f}] **{c['verdict']}**"
             for c in study["claims"]) + ". Momentum was removed at the recipe's learning rate, tuned for momentum "
         "(notebook 01 reads it).")
    if (best_run / "test_metrics.json").is_file():
        show_fig(report.confusion_figure(report.read_json(best_run / "test_metrics.json"),
                                         "best model, seed 0: test confusion"), 420)  # fmt: skip
elif full is not None and full["values"]:
    source = "studies/best_model/study_progress.json"
    mean = facts.get(source, "rows", 0, "summary", "mean")
    gain = facts.derive("difference", mean, acc, fmt="points")
    show(f"{RECIPE}: test accuracy **{mean}**, mean of {len(full['values'])} of its {full['repeats']} seeds "
         f"({gain} over the baseline); its leave-one-out ablations: {sum(ablations[0])} of {sum(ablations[1])} runs stored so far.")
    if stored := [r for r in progress_rows[1:] if r.get("minus_reference")]:
        show("Ablations so far, minus the full recipe (points, over the seeds both have): " + "; ".join(
            f"{report.ablated_ingredient(r['claims'][0]) + ' removed' if r.get('claims') else r['label']} "
            f"{100 * r['minus_reference']['mean']:+.2f} ({r['minus_reference']['runs']} seed"
            f"{'s' if r['minus_reference']['runs'] > 1 else ''})" for r in stored)
            + " (McNemar's test, seed by seed, in notebook 01).")
    if (best_run / "test_metrics.json").is_file():
        show_fig(report.confusion_figure(report.read_json(best_run / "test_metrics.json"),
                                         "best model, seed 0: test confusion"), 420)  # fmt: skip
elif (best / "test_metrics.json").is_file():
    metrics = report.read_json(best / "test_metrics.json")
    best_acc = facts.get("cifar10/best/test_metrics.json", "metrics", "test_acc")
    gain = facts.derive("difference", best_acc, acc, fmt="points")
    show(f"The first round's best model (BatchNorm, wider stages, flips, Adam): test accuracy **{best_acc}** "
         f"({gain} over the baseline), one seed; the `best_model` study (three seeds, ablations) replaces it.")
    show_fig(report.confusion_figure(metrics), 420)
else:
    show("No best-model results yet.")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## What did not work, and what is still open

# %%
diverged = [f"{name}: {r['label']}" for name, rep in reports.items() for r in rep["rows"] if r.get("diverged")]
stale = sorted(n for n, ok in current.items() if not ok)
items = [f"Diverged runs: {', '.join(diverged)}" if diverged else "No run of the stored studies diverged",
         f"Still to run at the final budget: {', '.join(stale)}" if stale else "Every study ran at its final budget"]
show("\n".join(f"- {item}" for item in items))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Compute

# %%
spent = [(rep, "final" if current[n] else "earlier round") for n, rep in reports.items()]
spent += [(p, "final, in progress") for n in [*report.STUDY_ORDER, "best_model"]
          if (p := report.load_study_progress(n, RESULTS)) is not None]
show(report.compute_table([r for r, _ in spent], RESULTS, [b for _, b in spent]))

# %% slideshow={"slide_type": "skip"}
if os.environ.get("LIT_MC_FACTS"):
    facts.save(os.environ["LIT_MC_FACTS"])
