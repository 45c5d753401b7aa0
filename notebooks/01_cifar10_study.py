# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
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

# %% [markdown]
# # CIFAR-10: a baseline CNN, its tuning, and its hypotheses
#
# Every table, figure and number below is computed from stored results (`results/`, `benchmarks/results/`);
# nothing here trains a model, and no result in the prose is typed by hand: each is read from its results file
# (`lit_mc.report.Facts`), and `tests/test_notebooks.py` reads every one of them again from its source (what is
# written in the text are constants of the method, such as a patience or a reference's layer count). The
# commands that produced each result are in the README; each study file in `configs/studies/` states its
# hypothesis, reference, claims and budget.
#
# **W&B trail.** The same runs can be followed in Weights & Biases, offline unless an account is set up:
# `lit-mc study run FILE --wandb` logs each study cell as a run grouped by study and setting (W&B's grouped charts
# then show each setting's mean and spread), and `--trainer.logger=WandbLogger` does it for a single fit. The
# offline runs sit in each run's folder (`lightning_logs/.../wandb/offline-run-*`, not committed) and `wandb sync`
# uploads them (README, W&B). This notebook reads only the local results store, so it needs no account.

# %%
import collections
import itertools
import math
import os
import statistics
import warnings
from pathlib import Path
import yaml
from IPython.display import Image, Markdown, display
warnings.filterwarnings("ignore")
from lit_mc import report

os.chdir(os.environ.get("LIT_MC_REPO", Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
RESULTS, BENCH = report.results_root(), report.bench_root()
facts = report.Facts(RESULTS)  # every number quoted in the prose, with its source
show = lambda text: display(Markdown(text))
show_fig = lambda fig: display(Image(data=report.figure_png(fig)))
print("results:", RESULTS.resolve(), "| benchmarks:", BENCH.resolve())

# %% [markdown]
# ## 1. Task and data
#
# CIFAR-10: small colour photographs in ten balanced classes. The baseline trains on a stratified train/validation
# split of the training set; the studies use stratified k-fold splits of a stratified subset; the test set is used
# once per final model. Below, computed from the data (when it is present, else the cell says so): the class
# balance of the training and the test set, the channel statistics, and a sample of each class.

# %%
from lit_mc.classification.datamodule import default_data_dir, load_cifar10
from lit_mc.classification.eda import channel_stats, class_counts, sample_grid
try:
    arrays = load_cifar10(default_data_dir())
except Exception as e:  # the notebook still renders without the data
    arrays = None
    print("CIFAR-10 not available here:", e)
if arrays is not None:
    train, test = (class_counts(y, arrays.class_names) for y in (arrays.train_labels, arrays.test_labels))
    by_class = {c: channel_stats(arrays.train_images[arrays.train_labels == i])[0]
                for i, c in enumerate(arrays.class_names)}  # mean R, G, B of each class's training images
    show(report.markdown_table(["class", "training images", "test images", "mean R, G, B (training)"],
                               [(c, train[c], test[c], ", ".join(f"{v:.3f}" for v in by_class[c]))
                                for c in arrays.class_names]))
    blueness = {c: float(m[2] - m[0]) for c, m in by_class.items()}  # blue minus red
    most, least = max(blueness, key=blueness.get), min(blueness, key=blueness.get)
    bluest = sorted(blueness, key=blueness.get)[-2:]
    show(f"The classes differ in mean colour: {most} images are the bluest on average (blue minus red "
         f"{blueness[most]:+.3f}), {least} the least blue ({blueness[least]:+.3f}); colour, mostly the background "
         f"(sky, water, grass), carries some class information besides shape, and the two bluest classes "
         f"({bluest[1]}, {bluest[0]}) may be a pair a model confuses on colour (the baseline's confusions below "
         "show whether it does; colour is not isolated as the cause).")
    n, _, height, width = arrays.train_images.shape
    gaps = [max(c.values()) - min(c.values()) for c in (train, test)]
    balance = ("every class has the same number of images in both" if gaps == [0, 0] else
               f"the largest and smallest class differ by {gaps[0]} images in training and {gaps[1]} in the test set")
    show(f"{n:,} training and {len(arrays.test_labels):,} test images of {height}x{width} pixels; {balance}.")
    mean, std = channel_stats(arrays.train_images)
    show(f"Channel mean (R, G, B) of the training images on the unit scale: {', '.join(f'{m:.4f}' for m in mean)}; "
         f"std: {', '.join(f'{s:.4f}' for s in std)}.")
    show_fig(sample_grid(arrays.train_images, arrays.train_labels, arrays.class_names, per_class=8))

# %% [markdown]
# **Preprocessing.** The images stay uint8 in memory; each batch is scaled to the unit interval on the device and
# normalised by the channel mean and std of the run's own training split (not the validation or test images). The
# statistics travel in the model's checkpoint, so a checkpoint tests and predicts with the normalisation it was
# trained with. Augmentation (studies only) is applied to the uint8 batch before that.

# %% [markdown]
# ## 2. Metrics, and why
#
# The classes are balanced (table above), so **accuracy** is a fair headline number; **macro-F1** (the mean of the
# per-class F1) would expose a model that buys accuracy on easy classes with recall on hard ones, **per-class
# accuracy** and the **confusion matrix** show which classes are confused, and the **expected calibration error**
# says whether the confidence can be trusted. Validation metrics choose checkpoints and settings; the test set is
# used once per final model, with one exception stated where it happens: the best model's leave-one-out ablations
# (in the studies section) train on all training images, so they are compared on the test images.

# %% [markdown]
# ## 3. The baseline
#
# A few conv layers (ReLU, max-pool) and fully connected layers, plain SGD without momentum, regularisation or
# BatchNorm, trained on the whole training split (`make train`); its settings, from its config:

# %%
config = yaml.safe_load(Path("configs/cifar10/baseline.yaml").read_text())
net, model = config["model"]["init_args"]["model"]["init_args"], config["model"]["init_args"]
show(f"Conv channels {net['channels']} ({net['kernel_size']}x{net['kernel_size']}, {net['pooling']} pooling), hidden "
     f"FC {net['hidden']}, SGD lr {model['lr']}, batch {config['data']['init_args']['batch_size']}, "
     f"{config['trainer']['max_epochs']} epochs, {config['data']['init_args']['val_size']:,} validation images.")
baseline = RESULTS / "cifar10" / "baseline"
show_fig(report.run_curves_figure(baseline / "metrics.csv", "baseline.yaml: curves of the run on the training split"))
baseline_test = report.read_json(baseline / "test_metrics.json")
show(report.test_report_markdown(baseline_test))
show_fig(report.confusion_figure(baseline_test, "baseline.yaml: test confusion (row-normalised: share of each true "
                                               "class)"))
show("**The baseline's most frequent confusions** (test images of the true class given the wrong label):\n\n"
     + report.confusion_pairs_markdown(baseline_test))

# %% [markdown]
# **Overfitting one batch** (`python benchmarks/overfit_one_batch.py`): a model that cannot memorise a single batch
# has a bug. A model passes when it classifies every image of the batch right within its step budget; the steps to
# the table's loss mark say how far past that it drove the loss (plain SGD without momentum gets there slowly, so the
# baseline may pass on accuracy and not reach the loss mark in its budget).

# %%
overfit = report.read_json(BENCH / 'overfit_one_batch.json')
show(report.overfit_markdown(overfit))
if (fig := report.overfit_figure(overfit)) is not None:
    show_fig(fig)

# %% [markdown]
# ## 4. The statistical error of the baseline: cross-validation
#
# `lit-mc cv --config configs/cifar10/baseline.yaml --folds 5`: the same config on stratified folds of the whole
# training set.

# %%
cv = report.read_json(RESULTS / 'cv' / 'baseline' / 'summary.json')
show(report.cv_markdown(cv))
noise = facts.get("cv/baseline/summary.json", "summary", "val_acc", "std", fmt="abs_points")
epochs = yaml.safe_load(Path(cv["config"]).read_text())["trainer"]["max_epochs"]
show(f"Between folds, the baseline's validation accuracy varies by {noise} (a point estimate, read with its "
     "interval and floor in the next paragraph; sample std over "
     f"{facts.get('cv/baseline/summary.json', 'folds', fmt='int')} folds, each trained for the config's {epochs} "
     "epochs and scored at the last).")
cv_file, cv_cell = "cv/baseline/summary.json", f"cv/baseline/cells/{cv['cells'][0]}.json"
n_folds = facts.get(cv_file, "folds", fmt="int")
cv_std = facts.get(cv_file, "summary", "val_acc", "std", fmt="abs_points2")
fold_images = facts.get(cv_cell, "val_images", fmt="int")
fold_se = facts.derive("binomial_se", facts.get(cv_file, "summary", "val_acc", "mean"), fold_images, fmt="abs_points2")
std_low, std_high = (facts.derive(rule, cv_std, n_folds, fmt="abs_points2") for rule in ("std_ci_low", "std_ci_high"))
show(f"That std ({cv_std}) is itself an estimate from {n_folds} numbers: its 95% interval (chi-square, for normal scatter) "
     f"runs from {std_low} to {std_high}. "
     + (f"Its point value lies below the binomial standard error of one fold's accuracy on its {fold_images} "
        f"validation images ({fold_se}), a floor the true fold-to-fold std cannot go below, since every fold is "
        "scored on different images; so the true spread is near the top of that interval, and the point value is "
        "a lucky draw, not the error to plan with." if cv_std.value < fold_se.value else
        f"It lies above the binomial standard error of one fold's accuracy on its {fold_images} validation images "
        f"({fold_se}), so the folds differ by more than the scoring of different images alone."))
grid_noise, grid_noise_note, grid_fold = noise, "at the baseline config's fixed budget", None
if (RESULTS / 'studies' / 'tuning_confirmed' / 'study.json').is_file():
    tc = report.load_study('tuning_confirmed', RESULTS)
    ref = tc['rows'][0]
    grid_fold = {"mean": facts.get('studies/tuning_confirmed/study.json', 'rows', {'label': ref['label']}, 'summary',
                                   'mean'),
                 "images": facts.get('studies/tuning_confirmed/study.json', 'rows', {'label': ref['label']},
                                     'val_images', fmt='int')}  # fmt: skip
    grid_noise = facts.get('studies/tuning_confirmed/study.json', 'rows', {'label': ref['label']}, 'summary', 'std',
                           fmt='abs_points')
    stops = [facts.get(f"studies/cells/{k}.json", 'curves', field='val_acc', reduce='argmax_epoch', fmt='int')
             for k in ref['cells']]
    grid_noise_note = f"over the {len(stops)} folds of `tuning_confirmed`, at the grid's budget"
    cap = next(b.split('=')[1] for b in tc['budget'] if b.startswith('--trainer.max_epochs='))
    images = [facts.get('studies/tuning_confirmed/study.json', 'rows', {'label': ref['label']}, f"{split}_images",
                        fmt='int') for split in ('train', 'val')]
    show(f"At the tuning grid's budget (up to {cap} epochs with early stopping, each run scored at its best epoch; "
         f"study `tuning_confirmed` below, {images[0]} / {images[1]} images per fold) the same config varies more, by "
         f"{grid_noise}: each fold stops at its own epoch (best epochs "
         f"{facts.derive('min', *stops, fmt='int')} to {facts.derive('max', *stops, fmt='int')}), so early "
         "stopping may add its own spread to that of the data; that cause is not isolated here, since the two "
         "budgets also differ in epochs and images.")

# %% [markdown]
# ## 5. Studies
#
# Each study below is hypothesis (with its reference) -> experiment (settings x folds at a stated budget) -> result
# (learning curves: validation solid, training dashed; the metric per setting with its t-interval, folds as grey
# dots) -> one verdict per claim (Nadeau-Bengio corrected resampled t-test over the folds, Holm-adjusted; or
# "untested" where a setting ran once) -> reflection. The first four tune the learning rate and batch size of plain
# SGD on all training data (three grids of single runs, then their five-fold confirmation, `tuning_confirmed`); the
# nine after them each vary one thing of the tuned baseline at a smaller budget (half the training set, in five
# folds), each against its own reference run (its budget and learning rate are in its table); then transfer
# learning, and last the best model. A study
# whose stored results come from an earlier budget than its study file states says so, and waits for its re-run.

# %%
studies = report.available_studies(RESULTS)
reports = {name: report.load_study(name, RESULTS) for name in studies}
STUDY_FILES = Path(os.environ.get("LIT_MC_STUDIES", "configs/studies"))  # the study files the results must match
current = {name: report.stored_at_current_budget(rep, STUDY_FILES / f"{name}.yaml")
           for name, rep in reports.items()}
def in_progress(name):  # a study whose campaign is under way: its stored runs so far (no verdict), or None
    return report.load_study_progress(name, RESULTS)
def study_title(name):  # "Study 5: width": the number the study file's first line gives it (the text's cross-references)
    first = (STUDY_FILES / f"{name}.yaml").read_text().split("\n", 1)[0] if (STUDY_FILES / f"{name}.yaml").is_file() else ""
    return f"Study {first.split(':')[0].removeprefix('# Study ')}: {name}" if first.startswith("# Study ") else f"Study: {name}"
def show_study(name):
    if (progress := in_progress(name)) is not None:
        show(f"### {study_title(name)}, in progress at its file's budget")
        show("What the campaign has stored so far (`lit-mc study report "
             f"configs/studies/{name}.yaml`): a setting's mean is over the runs stored, a re-tuned setting shows "
             "each candidate rate's score until one is chosen, and nothing is compared until every cell is in.\n\n"
             + report.study_progress_markdown(progress))
    if name not in reports:
        return print(f"no stored report of study {name}")
    rep = reports[name]
    show(f"### {study_title(name)}" + (", the earlier round" if progress is not None else ""))
    if not current[name]:
        show(f"**Results of an earlier round.** These cells ran at `{' '.join(rep['budget'])}` with {rep['folds']} "
             f"folds; `configs/studies/{name}.yaml` now states another budget, and its re-run is still to come "
             "(`configs/studies/README.md`). The first round's reflection is withdrawn: its budget could not carry "
             "its verdicts.")
        planned = yaml.safe_load((STUDY_FILES / f"{name}.yaml").read_text())
        show(f"**The hypothesis as the study file now states it, to be tested by the re-run:** "
             f"{planned['hypothesis'].strip()} Its claims: "
             + "; ".join(f"*{c['claim']}*" for c in planned.get("claims", [])) + ". Below, the earlier round's "
             "hypothesis and results, as they ran.")
    show(report.study_markdown(rep, verdicts=current[name]))
    cells = report.study_cells(rep, RESULTS)
    for fig in report.study_figures(rep, cells).values():
        show_fig(fig)
    if stats := report.curve_statistics_markdown(rep, cells):
        show("**What the curves show, in numbers** (mean over each setting's folds; the gap is training minus "
             "validation accuracy at the best validation epoch, the overfitting where the setting is scored; "
             "training accuracy is the running mean over the epoch in training mode, so with dropout or "
             "augmentation it reads lower than the net's fit to its training images):\n\n"
             + stats)
    if current[name] and any(c["verdict"] != "untested" for c in rep.get("claims", [])):
        show(f"**The claims read ({name}).**\n\n" + report.claims_reflection(facts, name))
    if current[name] and (transfer := report.budget_transfer_markdown(name, RESULTS)):
        show(transfer)
def study_lr(name):  # the learning rate a study's reference runs used, read from their stored config
    return facts.get(f"studies/cells/{reports[name]['rows'][0]['cells'][0]}.json", "resolved_config", "model",
                     "init_args", "lr", fmt="lr")
def row(name, label, *path, **kw):  # a number of one setting of a study's report
    return facts.get(f"studies/{name}/study.json", "rows", {"label": label}, *path, **kw)
def measurement_error(name, label):  # twice the binomial standard error of one run's accuracy on its images
    acc, images = row(name, label, "summary", "mean"), row(name, label, "val_images", fmt="int")
    return facts.derive("twice_binomial_se", acc, images, fmt="abs_points")
def run_sd(name, label):  # one single run's sd: tuning_confirmed's fold-to-fold std, rescaled to this run's images
    if grid_fold is None:  # no 5-fold measurement: the binomial sd of the run's scoring alone (an underestimate)
        return facts.derive("binomial_se", row(name, label, "summary", "mean"), row(name, label, "val_images",
                            fmt="int"), fmt="abs_points")  # fmt: skip
    return facts.derive("run_sd", grid_noise, grid_fold["mean"], grid_fold["images"],
                        row(name, label, "val_images", fmt="int"), fmt="abs_points")
def difference_error(name, label):  # half-width of a 95% interval of a difference of two single runs
    return facts.derive("error95_of_difference", run_sd(name, label), fmt="abs_points")
def beyond(difference, error):  # words for a difference against a measurement error, from their values
    return "beyond" if abs(difference.value) > error.value else "within"
def curve(name, label, field, reduce, fmt="int"):  # a statistic of one setting's (first) cell's curves
    key = next(r for r in reports[name]["rows"] if r["label"] == label)["cells"][0]
    return facts.get(f"studies/cells/{key}.json", "curves", field=field, reduce=reduce, fmt=fmt)
print("studies with results:", ", ".join(studies))

# %%
show_study('learning_rate')

# %%
if current.get('learning_rate'):
    rep = reports['learning_rate']
    labels = [r['label'] for r in rep['rows']]
    acc = {lab: row('learning_rate', lab, 'summary', 'mean') for lab in labels}
    best = max(labels, key=lambda lab: acc[lab].value)
    low, high = labels[0], labels[-1]
    stop = {lab: curve('learning_rate', lab, 'val_acc', 'argmax_epoch') for lab in (low, best, high)}
    ran = {lab: curve('learning_rate', lab, 'val_acc', 'count') for lab in (low, best, high)}
    lr_cap = int(next(b.split('=')[1] for b in rep['budget'] if b.startswith('--trainer.max_epochs=')))
    loss_min = {lab: curve('learning_rate', lab, 'val_loss', 'argmin_epoch') for lab in (best, high)}
    loss_low = {lab: curve('learning_rate', lab, 'val_loss', 'min', fmt='loss') for lab in (best, high)}
    train_last = {lab: curve('learning_rate', lab, 'train_acc', 'last', fmt='pct') for lab in (best, high)}
    val_last = curve('learning_rate', best, 'val_acc', 'last', fmt='pct')
    diverged = [r['label'] for r in rep['rows'] if r.get('diverged')]
    pair_error = difference_error('learning_rate', best)
    gain = facts.derive('difference', acc[best], acc[low], fmt='points')
    drop = facts.derive('difference', acc[high], acc[best], fmt='points')
    steps = [facts.derive('difference', acc[b], acc[a], fmt='abs_points') for a, b in zip(labels[:-1], labels[1:], strict=True)]
    resolved = [st for st in steps if st.value > pair_error.value]
    shape = (f"is highest at {best}; neighbouring rates differ by {', '.join(steps)}, "
             + ("none of them beyond" if not resolved else f"{len(resolved)} of {len(steps)} beyond")
             + f" the error of a difference of two single runs ({pair_error}, below), so the curve's shape "
             + ("is not resolved by these single runs" if not resolved else
                "is resolved where a step exceeds that error"))
    ends = [d for d in (gain, drop) if abs(d.value) > pair_error.value]
    shape += ("; neither the gain over the smallest rate nor the fall at the largest exceeds that error either"
              if not ends else "")
    show(f"**Reflection (learning_rate).** On {row('learning_rate', low, 'train_images', fmt='int')} training "
         f"images with early stopping, the best validation accuracy {shape}: "
         f"{acc[low]} at {low}, {acc[best]} at {best} ({gain}), {acc[high]} at {high} ({drop} from the peak). "
         f"The small rate peaks later: its best epoch is {stop[low]} of {ran[low]} (early stopping ended it"
         + (f", not the cap of {lr_cap} epochs" if ran[low].value < lr_cap else f", at the cap of {lr_cap} epochs")
         + f"), against {stop[best]} of {ran[best]} at {best}. "
         + ("The largest rate overfits sooner rather than settling at a noisier level: " if
            loss_min[high].value <= loss_min[best].value else "At the largest rate ")
         + f"its validation loss is lowest at epoch {loss_min[high]} ({loss_low[high]}, against {loss_low[best]} "
         f"at epoch {loss_min[best]} for {best}), its validation accuracy peaks at epoch {stop[high]} of "
         f"{ran[high]}, and its training accuracy climbs on to {train_last[high]} by the last epoch. "
         + (f"Diverged: {', '.join(diverged)}. " if diverged else
            "No rate of the grid diverged, so the largest stable rate lies above the grid; Bengio (2012) recommends "
            "starting from the largest stable rate and going down from there. ")
         + f"At {best} too the validation loss bottoms out (epoch {loss_min[best]} of {ran[best]}) while training "
         f"accuracy keeps rising (last epoch: {train_last[best]} training, {val_last} validation): past that epoch "
         "the net grows more confident on the images it gets wrong, and early stopping on validation accuracy keeps "
         f"the best epoch. How sure: each setting ran once. One run's accuracy varies by about {run_sd('learning_rate', best)} "
         f"(sd: the default's fold-to-fold std {grid_noise_note}, {grid_noise}, rescaled from its folds' validation "
         "images to this study's; mostly training noise, the scoring of the images alone is smaller), so a "
         f"difference of two runs has a 95% error of about {pair_error}. The gain over the default is "
         f"{beyond(gain, pair_error)} that error and the fall at the largest rate {beyond(drop, pair_error)} it; "
         "`configs/studies/tuning_confirmed.yaml` tests the chosen rate against the default over five folds (its "
         "verdict below).")

# %%
show_study('batch_size')

# %%
if current.get('batch_size'):
    rep = reports['batch_size']
    rows = rep['rows']
    lr_of = lambda r: r['setting']['model.init_args.lr']
    batch_of = lambda r: r['setting']['data.init_args.batch_size']
    fixed = sorted((r for r in rows if lr_of(r) == lr_of(rows[0])), key=batch_of)
    anchor = next(r for r in fixed if batch_of(r) == 64)
    ratio = lr_of(anchor) / batch_of(anchor)
    scaled = sorted((r for r in rows if abs(lr_of(r) / batch_of(r) - ratio) < 1e-12 and r is not anchor), key=batch_of)
    a = {r['label']: row('batch_size', r['label'], 'summary', 'mean') for r in rows}
    peak = max(fixed, key=lambda r: a[r['label']].value)
    steps = {r['label']: curve('batch_size', r['label'], 'val_acc', 'argmax_epoch') for r in (fixed[0], fixed[-1])}
    pairs = ", ".join(f"batch {batch_of(r)} at lr {lr_of(r)}: {a[r['label']]} "
                      f"({facts.derive('difference', a[r['label']], a[anchor['label']], fmt='points')})" for r in scaled)
    equal = [a[r['label']] for r in [anchor, *scaled]]
    spread = facts.derive('difference', facts.derive('max', *equal), facts.derive('min', *equal), fmt='abs_points')
    loss = facts.derive('difference', a[fixed[-1]['label']], a[peak['label']], fmt='abs_points')
    pair_error = difference_error('batch_size', anchor['label'])
    series = ", ".join(f"{a[r['label']]} at batch {batch_of(r)}" for r in fixed)
    near_peak = [r for r in fixed if r is not peak and abs(a[r['label']].value - a[peak['label']].value)
                 <= pair_error.value]
    verdict = ("so single runs cannot tell the equal-ratio settings apart, which is what the theory predicts for "
               "batches well below the critical batch size (McCandlish et al. 2018; Shallue et al. 2019 measure the same "
               "perfect-scaling regime); that is not a shown equivalence: "
               "the one equivalence test of an equal-ratio pair, over five folds in `tuning_confirmed`, is below"
               if spread.value <= pair_error.value else
               "so the rule holds only roughly here: the equal-ratio settings differ by more than the error of a "
               "difference of two runs, and single runs cannot say whether that is the batch or the run")
    show(f"**Reflection (batch_size).** At a fixed learning rate ({lr_of(anchor)}): {series}. Accuracy is highest "
         f"at batch {batch_of(peak)}"
         + (f" (batch {', '.join(str(batch_of(r)) for r in near_peak)} within the error of a difference of it)"
            if near_peak else "")
         + f" and is {loss} lower at batch {batch_of(fixed[-1])}, {beyond(loss, pair_error)} that error; the largest "
         f"batch also needs more epochs (best epoch {steps[fixed[-1]['label']]} against "
         f"{steps[fixed[0]['label']]} at batch {batch_of(fixed[0])}): fewer steps per epoch, each less noisy. Scaling "
         f"the rate with the batch (equal lr / batch, the linear scaling rule of Goyal et al. 2017 and the noise scale "
         f"of Smith & Le 2018) against batch {batch_of(anchor)} at {lr_of(anchor)} ({a[anchor['label']]}): {pairs}. "
         f"The equal-ratio settings span {spread}, against {loss} lost by keeping the rate at the largest batch and "
         f"a 95% error of about {pair_error} in a difference of two single runs (from the fold-to-fold noise, as "
         f"above), {verdict}.")

# %%
show_study('lr_batch_size')

# %%
if current.get('lr_batch_size'):
    rep = reports['lr_batch_size']
    rows = rep['rows']
    lr_of = lambda r: r['setting']['model.init_args.lr']
    batch_of = lambda r: r['setting']['data.init_args.batch_size']
    ratio_of = lambda r: round(lr_of(r) / batch_of(r), 10)
    mean = lambda r: r['summary']['mean']
    acc = lambda r: row('lr_batch_size', r['label'], 'summary', 'mean')  # a quoted number, with its source
    best, worst = max(rows, key=mean), min(rows, key=mean)
    best_acc, worst_acc = acc(best), acc(worst)
    grid_spread = facts.derive('difference', best_acc, worst_acc, fmt='abs_points')
    budget = [b for b in rep['budget'] if b.startswith('--trainer.max_epochs=')]
    cap = int(budget[0].split('=')[1]) if budget else None
    def epochs_run(r):
        curves = report.read_json(RESULTS / 'studies' / 'cells' / f"{r['cells'][0]}.json")['curves']
        return sum(e.get('val_acc') is not None for e in curves)
    capped = [r for r in rows if cap and epochs_run(r) >= cap]
    ratios = {}
    for r in rows:
        ratios.setdefault(ratio_of(r), []).append(r)
    error = difference_error('lr_batch_size', best['label'])
    diagonals, diagonal_means = [], []
    for ratio, cells in sorted(ratios.items()):
        if len(cells) >= 3:
            high, low = max(cells, key=mean), min(cells, key=mean)
            high_acc, low_acc = acc(high), acc(low)
            spread = facts.derive('difference', high_acc, low_acc, fmt='abs_points')
            diagonals.append((spread, f"lr / batch {ratio:.5f} ({len(cells)} settings, batch "
                              f"{min(map(batch_of, cells))} to {max(map(batch_of, cells))}): {low_acc} to {high_acc}, "
                              f"a spread of {spread}, {beyond(spread, error)} the error of a difference"))
            if uncapped := [c for c in cells if c not in capped]:
                diagonal_means.append(facts.derive('mean', *map(acc, uncapped)))
    within = all(spread.value <= error.value for spread, _ in diagonals)
    n_cells = facts.get('studies/lr_batch_size/study.json', 'rows', reduce='count', fmt='int')
    luck = facts.derive('expected_max_excess', n_cells, grid_noise, fmt='abs_points')
    gaps = {r['label']: report.curve_statistics(report.read_json(RESULTS / 'studies' / 'cells' / f"{r['cells'][0]}.json"))
            for r in rows}
    gap_of = lambda r: gaps[r['label']][2] - gaps[r['label']][3]  # train minus val accuracy at the best epoch
    widest = max(rows, key=gap_of)
    top = sorted(rows, key=mean)[-3:]
    confirmed = {(r['setting'].get('model.init_args.lr'), r['setting'].get('data.init_args.batch_size'))
                 for r in reports.get('tuning_confirmed', {}).get('rows', [])}  # fmt: skip
    remeasured = (lr_of(best), batch_of(best)) in confirmed
    across = (facts.derive('difference', facts.derive('max', *diagonal_means), facts.derive('min', *diagonal_means),
                           fmt='abs_points') if len(diagonal_means) > 1 else None)  # fmt: skip
    widest_spread = facts.derive('max', *(spread for spread, _ in diagonals), fmt='abs_points') if diagonals else None
    show(f"**Reflection (lr_batch_size).** The best cell of the grid is lr {lr_of(best)} at batch {batch_of(best)} "
         f"({best_acc}), the worst lr {lr_of(worst)} at batch {batch_of(worst)} ({worst_acc}): the grid spans "
         f"{grid_spread}. The best of {n_cells} single runs is also the luckiest: with the fold-to-fold std "
         f"{grid_noise_note} ({grid_noise}), the best of {n_cells} settings of equal merit would land about {luck} "
         "above their common mean by chance alone, so the grid's winner is read as one of the good settings, "
         "not the best. "
         + ("`tuning_confirmed` re-measures it over five folds. " if remeasured else
            "`tuning_confirmed` does not re-measure it: it re-measures the best rate of the `learning_rate` study at "
            "the default batch (the tuned baseline's setting), and one equal-ratio neighbour. ")
         + ("It is also the cell whose training accuracy runs furthest ahead of validation at its best epoch "
            "(the gap column of the curve table above): the most overfit of the grid. " if widest is best else "")
         + (f"The three best cells all lie on one diagonal of equal lr / batch ({ratio_of(top[0]):.5f}), the "
            "pattern the hypothesis names; as single runs, a pattern, not a test. "
            if len({ratio_of(r) for r in top}) == 1 else
            "The three best cells do not share a diagonal of equal lr / batch. ")
         + "Along each diagonal with three or more settings: "
         + "; ".join(text for _, text in diagonals)
         + f" (the 95% error of a difference of two single runs: about {error}, from the fold-to-fold noise). "
         + ("Every diagonal stays within that error: along a diagonal single runs cannot tell the settings apart, "
            "as the noise-scale view (Smith & Le 2018) predicts, but that is no shown equivalence (the claim's "
            "1-point margin needs more than single runs; the verdict above). "
            if within else
            "Not every diagonal stays within that error, so the ratio alone does not fix what plain SGD reaches here; "
            "the noise-scale view (Smith & Le 2018) holds only roughly at this budget. ")
         + (f"Across diagonals the means (cells that ran to the epoch cap left out) differ by {across}, against "
            f"spreads up to {widest_spread} within a diagonal; "
            + ("both are below the error of single runs, so at this budget neither the ratio nor the batch along a "
               "diagonal is resolved, and the grid's span comes from its corners (the cells below, and the "
               "largest rate at the smallest batch). " if max(across.value, widest_spread.value) <= error.value else
               "the diagonals differ by more than single runs' error. ") if across is not None else "")
         + (f"Ran to the {cap}-epoch cap without early stopping: {'; '.join(r['label'] for r in capped)}. Those cells "
            "measure the budget more than the setting (a small lr / batch needs more epochs), so that corner of the "
            "grid reads low." if capped else "Every cell stopped early, before the epoch cap."))

# %%
show_study('tuning_confirmed')

# %%
if current.get('tuning_confirmed') and 'tuning_confirmed' in reports:
    rep = reports['tuning_confirmed']
    labels = [r['label'] for r in rep['rows']]
    def spread(label):
        return (f"{row('tuning_confirmed', label, 'summary', 'mean')} ± "
                f"{row('tuning_confirmed', label, 'summary', 'std', fmt='abs_points')}")
    def best_epochs(label):  # the mean over folds of the epoch with the best validation accuracy
        keys = next(r for r in rep['rows'] if r['label'] == label)['cells']
        return facts.derive('mean', *(facts.get(f"studies/cells/{k}.json", 'curves', field='val_acc',
                                                 reduce='argmax_epoch', fmt='int') for k in keys), fmt='decimal')
    reference = labels[0]
    fold_std = row('tuning_confirmed', reference, 'summary', 'std', fmt='abs_points')
    scoring = facts.derive('binomial_se', row('tuning_confirmed', reference, 'summary', 'mean'),
                           row('tuning_confirmed', reference, 'val_images', fmt='int'), fmt='abs_points')
    verdicts = [c['verdict'] for c in rep['claims']]
    show(f"**Reflection (tuning_confirmed).** Over {rep['folds']} folds of "
         f"{row('tuning_confirmed', reference, 'train_images', fmt='int')} training / "
         f"{row('tuning_confirmed', reference, 'val_images', fmt='int')} validation images (mean ± std over folds): "
         + "; ".join(f"{lab}: {spread(lab)}, best epoch {best_epochs(lab)} on average" for lab in labels)
         + f". The fold-to-fold std of {reference} ({fold_std}) is well above the binomial standard error of scoring "
         f"a fold's validation images ({scoring}): most of a run's spread is training noise (which images a fold "
         "trains on and the order they come in, where early stopping lands; every cell starts from the same seed, "
         "so the spread leaves out what another initialisation would add), which is why the single runs of the grid above are read against it "
         "and not against the binomial error alone. "
         + ("The tuned baseline of studies 4-12 (`configs/cifar10/tuned.yaml`, lr 0.04 at batch 64) rests on a "
            "gain that is positive in every fold but not beyond the corrected error: it is the better-supported "
            "choice of the grid, not a confirmed one." if verdicts[0] != 'supported' else
            "The tuned baseline of studies 4-12 (`configs/cifar10/tuned.yaml`) rests on this confirmed gain."))
    study_file = 'studies/tuning_confirmed/study.json'
    for i, claim in enumerate(rep['claims']):
        link = claim['links'][0]
        per_fold = ('claims', i, 'links', 0, 'differences')
        ahead = facts.get(study_file, *per_fold, reduce='positive', fmt='int')
        low = facts.get(study_file, *per_fold, reduce='min', fmt='points')
        high = facts.get(study_file, *per_fold, reduce='max', fmt='points')
        folds = facts.get(study_file, *per_fold, reduce='count', fmt='int')
        show(f"*{claim['claim']}*: fold by fold, {link['label']} minus {link['against']} is positive in {ahead} of "
             f"{folds} folds, from {low} to {high}. "
             + ("The corrected test, which widens the standard error for the folds' shared training images, "
                "puts the difference beyond chance." if claim['verdict'] == 'supported' else
                "The sign changes between folds, and the interval above spans both signs." if 0 < ahead.value <
                folds.value else
                "The folds share three quarters of their training images, so their differences are not "
                "independent: the corrected test (Nadeau & Bengio 2003) widens the standard error for that, and "
                f"one sign in all {folds} folds is not by itself beyond chance (a two-sided sign test over "
                f"{folds} folds cannot go below p = {facts.derive('sign_test_floor', folds, fmt='p')})."))

# %%
def verdict(name, index):  # the stored verdict of a study's claim
    return reports[name]['claims'][index]['verdict']
def mean_acc(name, label):
    return row(name, label, 'summary', 'mean')
def mean_curve_statistics(name, label):  # best epoch, epochs run, train and val acc there, val-loss min epoch
    rep = reports[name]
    keys = next(r for r in rep['rows'] if r['label'] == label)['cells']
    stats = [report.curve_statistics(report.read_json(RESULTS / 'studies' / 'cells' / f'{k}.json')) for k in keys]
    return [sum(column) / len(stats) for column in zip(*stats, strict=True)]
for name in ['depth', 'width', 'kernel_size']:
    show_study(name)
    if name == 'depth' and current.get('depth'):  # what the curves add to the three nulls of the depth study
        labels = [r['label'] for r in reports['depth']['rows']]
        fit = {label: mean_curve_statistics('depth', label) for label in labels}
        two, three = labels[1], labels[2]  # the 2-stage net matched to the baseline's parameters, the baseline
        gap = {label: 100 * (fit[label][2] - fit[label][3]) for label in labels}
        show(f"**What the curves add (depth).** The depths are not told apart in validation accuracy at this budget "
             f"(the claims above are inconclusive), and they do not get there in the same way: at its best epoch the matched two-stage net ({two}) fits its training images to "
             f"{100 * fit[two][2]:.1f}%, a gap of {gap[two]:+.1f} points over validation, against {gap[three]:+.1f} "
             f"for three stages, whose validation loss bottoms out later (epoch {fit[three][4]:.1f} against "
             f"{fit[two][4]:.1f}). The shallow net holds nearly all its parameters in its fully connected head (it "
             "sees 8x8 maps, not 4x4) and spends them memorising: its extra capacity goes to fitting, not to features "
             "that transfer to the validation images, which is the direction Simonyan & Zisserman's argument "
             "predicts, at a size this budget cannot resolve. A fourth stage (4 stages: gap "
             f"{gap[labels[3]]:+.1f}) shows no validation gain that this budget resolves: on 32x32 images its maps are 2x2, and "
             "without BatchNorm or augmentation (studies 9, 10) a deeper plain net mainly fits its training set "
             "further; whether depth pays with those in place is not tested by this study.")

# %%
show_study('pooling')

# %%
if current.get('pooling'):
    acc = {p: mean_acc('pooling', f'pooling={p}') for p in ('max', 'avg', 'stride')}
    flops = {p: row('pooling', f'pooling={p}', 'flops', fmt='mflops') for p in ('max', 'stride')}
    gaps = {p: facts.derive('difference', acc[p], acc['max'], fmt='points') for p in ('avg', 'stride')}
    margin = reports['pooling']['claims'][1]['margin']
    avg_text = {
        "supported": "As Scherer et al. (2010) found for object recognition, max pooling beats averaging here: the "
                     "maximum keeps a feature that fires anywhere in the window, while the average dilutes it with "
                     "the background around it (Boureau et al. 2010 show max pooling separates sparse features "
                     "better).",
        "contradicted": "Against Scherer et al. (2010), averaging beats the maximum here.",
    }.get(verdict('pooling', 0), None)
    if avg_text is None:
        per_fold = ('claims', 0, 'links', 0, 'differences')
        file = 'studies/pooling/study.json'
        worse = facts.derive('difference', facts.get(file, *per_fold, reduce='count', fmt='int'),
                             facts.get(file, *per_fold, reduce='positive', fmt='int'), fmt='int')
        avg_text = (f"Average pooling is lower in {worse} of {reports['pooling']['folds']} folds (by "
                    f"{facts.get(file, *per_fold, reduce='max', fmt='abs_points')} to "
                    f"{facts.get(file, *per_fold, reduce='min', fmt='abs_points')}), the direction Scherer et al. "
                    f"(2010) report, but with {reports['pooling']['folds']} folds the corrected test detects only "
                    f"effects of about {facts.get(file, 'claims', 0, 'links', 0, 'mde', fmt='abs_points')}, so the "
                    "claim stays "
                    "inconclusive: a question of power, not of direction.")
    st, mx = mean_curve_statistics('pooling', 'pooling=stride'), mean_curve_statistics('pooling', 'pooling=max')
    gap_stride, gap_max = st[2] - st[3], mx[2] - mx[3]  # train minus val accuracy at the best epoch
    def val_at_fit(label, fit):  # mean over folds of val accuracy at the first epoch whose train accuracy >= fit
        keys = next(r for r in reports['pooling']['rows'] if r['label'] == label)['cells']
        values = []
        for k in keys:
            curve = report.read_json(RESULTS / 'studies' / 'cells' / f'{k}.json')['curves']
            reached = [e['val_acc'] for e in curve if e.get('train_acc') is not None and e['train_acc'] >= fit]
            if reached:
                values.append(reached[0])
        return sum(values) / len(values) if values else None
    at_same_fit = val_at_fit('pooling=max', st[2])
    if abs(gap_stride - gap_max) < 0.02 and st[2] < mx[2] - 0.02:
        stride_reading = ("At its best epoch the strided net fits its training images less well than max pooling "
                          "with about the same train-validation gap (the curve table), which reads like "
                          "underfitting; "
                          + (f"but compared at the same training accuracy (the strided net's at its best epoch, "
                             f"{100 * st[2]:.1f}%), max pooling validates at {100 * at_same_fit:.1f}% against "
                             f"{100 * st[3]:.1f}%, so the strided net generalises worse per unit of fit, and its "
                             "validation accuracy stalls while its training accuracy goes on rising (the curves). "
                             if at_same_fit is not None and at_same_fit > st[3] + 0.02 else
                             "and at the same training accuracy max pooling validates no higher. ")
                          + "It computes each stage at a quarter of the positions (the MFLOPs above), without a "
                          "maximum's tolerance to small shifts, and Springenberg et al.'s all-convolutional nets add "
                          "layers to make up for that, which this three-stage net does not; which of these is the "
                          "cause is not tested here.")
    elif gap_stride > gap_max + 0.02:
        stride_reading = ("The curve table says how: at its best epoch its training accuracy runs further ahead of "
                          "validation than with max pooling, so it generalises worse; whether that is the missing "
                          "shift tolerance of a maximum over a window is not tested here.")
    else:
        stride_reading = "The curve table does not separate underfitting from worse generalisation here."
    stride_text = {
        "supported": "The strided convolution, which learns its downsampling, matches max pooling within the "
                     "margin, as in Springenberg et al.'s all-convolutional nets.",
    }.get(verdict('pooling', 1),
          "The strided convolution is not shown to match max pooling: it is lower by more than the margin. "
          + stride_reading
          if gaps['stride'].value < -margin else
          "The strided convolution is not shown to match max pooling: it runs ahead of it by more than the "
          "margin allows to be called equal." if gaps['stride'].value > margin else
          "The strided convolution's mean is within the margin of max pooling, but the folds spread too much to "
          "show the equivalence.")
    show(f"**Reflection (pooling).** Best validation accuracy, mean over the folds: max pooling {acc['max']}, "
         f"average pooling {acc['avg']} ({gaps['avg']}), strided convolution {acc['stride']} ({gaps['stride']}, at "
         f"{flops['stride']} per image against {flops['max']} with pooling). {avg_text} {stride_text}"
         + ("" if any(r.get('retune') for r in reports['pooling']['rows']) else
            f" All three ran at the max-pooling net's learning rate, {study_lr('pooling')} (this study re-tunes "
            "none" + (f"; the BatchNorm study's re-tuning chose {study_lr('batch_norm')} for the same plain net"
                      if 'batch_norm' in reports else "") + "): average pooling "
            "passes a quarter of the gradient to each input of a window where a maximum passes all of it to one, "
            "so a rate tuned for max pooling may not suit it, and part of either gap may be the rate. The studies "
            "that re-tune per setting (BatchNorm, weight init, optimiser) show how far a rate can move."))

# %%
show_study('dropout')

# %%
if current.get('dropout'):
    rates = ('0.0', '0.25', '0.5')
    acc = {d: mean_acc('dropout', f'dropout={d}') for d in rates}
    stats = {d: mean_curve_statistics('dropout', f'dropout={d}') for d in rates}
    gap = {d: stats[d][2] - stats[d][3] for d in rates}  # train minus val accuracy at the best epoch
    plain = stats['0.0']
    overfits = plain[4] < plain[0] or gap['0.0'] > 0.05
    narrows = gap['0.5'] < gap['0.25'] < gap['0.0']
    gain = facts.derive('difference', acc['0.5'], acc['0.0'], fmt='points')
    keys = {d: next(r for r in reports['dropout']['rows'] if r['label'] == f'dropout={d}')['cells'] for d in rates}
    loss_min = {d: [facts.get(f"studies/cells/{k}.json", 'curves', field='val_loss', reduce='argmin_epoch', fmt='int')
                    for k in keys[d]] for d in rates}
    loss_min_means = [sum(n.value for n in loss_min[d]) / len(loss_min[d]) for d in rates]
    cap = int(next(b.split('=')[1] for b in reports['dropout']['budget'] if b.startswith('--trainer.max_epochs=')))
    ran = {d: [facts.get(f"studies/cells/{k}.json", 'curves', field='val_acc', reduce='count', fmt='int')
               for k in keys[d]] for d in rates}
    at_cap = {d: sum(n.value >= cap for n in ran[d]) for d in rates}
    plain_short = [n for n in ran['0.0'] if n.value < cap]
    confounds = ("Two things of the budget bear on these numbers. "
                 + (f"The plain net's runs end after {facts.derive('min', *ran['0.0'], fmt='int')} to "
                    f"{facts.derive('max', *ran['0.0'], fmt='int')} epochs: early stopping (patience 5) ends some "
                    "folds long before others, and those folds score lower, so part of the gain is from runs that "
                    "dropout keeps going. " if ran['0.0'] and len({n.value for n in ran['0.0']}) > 1 and plain_short
                    else "")
                 + (f"At 0.5, {at_cap['0.5']} of {len(ran['0.5'])} folds ran to the {cap}-epoch cap, so its "
                    "accuracy and its validation-loss minimum may be cut off by the budget (the 0.5 rate could do "
                    "better with more epochs)." if at_cap['0.5'] else ""))
    show(f"**Reflection (dropout).** Best validation accuracy, mean over the folds: {acc['0.0']} without dropout, "
         f"{acc['0.25']} at 0.25 ({facts.derive('difference', acc['0.25'], acc['0.0'], fmt='points')}), "
         f"{acc['0.5']} at 0.5 ({facts.derive('difference', acc['0.5'], acc['0.0'], fmt='points')}). The first half "
         "of the hypothesis, that the plain net overfits, "
         + ("holds: at its best epoch its training accuracy runs ahead of validation, and its validation loss "
            "bottoms out before its validation accuracy peaks (the curve table above). " if overfits else
            "does not clearly hold at this budget (the curve table above). ")
         + ("Dropout narrows that gap step by step (0 > 0.25 > 0.5 in the table), but the gap alone overstates "
            "it: training accuracy is logged in training mode, averaged over the epoch with dropout switched on, "
            "so the dropped-out net's training accuracy reads low by construction. " if narrows else
            "Dropout does not narrow that gap step by step (the table). ")
         + (f"The measure dropout does not bias is the validation loss, and its minimum moves later with the rate "
            f"(epoch {facts.derive('mean', *loss_min['0.0'], fmt='decimal')} without dropout, "
            f"{facts.derive('mean', *loss_min['0.25'], fmt='decimal')} at 0.25, "
            f"{facts.derive('mean', *loss_min['0.5'], fmt='decimal')} at 0.5, mean over the folds): the net "
            "starts to overfit later, as the regulariser Srivastava et al. (2014) describe would make it; slower "
            "fitting alone would also move the minimum later, so this is consistent with regularisation rather than "
            "a proof of it. "
            if loss_min_means[0] < loss_min_means[1] < loss_min_means[2] else
            "The validation loss, which dropout does not bias, does not bottom out later step by step with the "
            "rate (the table), so the curves do not show dropout delaying the overfitting. ")
         + ("It also buys validation accuracy beyond the corrected error (claims above)." if verdict('dropout', 0)
            == 'supported' else
            f"It also raises validation accuracy (at 0.5 by {gain}), but with {reports['dropout']['folds']} folds "
            "that stays inside what the corrected test cannot tell from chance (claims above): a question of "
            "power, not of direction." if gain.value > 0 else
            "It does not raise validation accuracy here; early stopping on validation accuracy already keeps each "
            "run at its best epoch, which takes away part of what dropout would otherwise add (Goodfellow et al. "
            "2016, sec. 7.8, on early stopping as a regulariser).")
         + " " + confounds
         + ("" if any(r.get('retune') for r in reports['dropout']['rows']) else
            f" All rates ran at the plain net's learning rate, {study_lr('dropout')} (not re-tuned per setting); "
            "dropout adds gradient noise "
            "and may want another rate, so the gains are of each net at one shared rate."))

# %%
show_study('batch_norm')

# %%
if current.get('batch_norm'):
    labels = ('batch_norm=False', 'batch_norm=True')
    acc = {lab: mean_acc('batch_norm', lab) for lab in labels}
    keys = {lab: next(r for r in reports['batch_norm']['rows'] if r['label'] == lab)['cells'] for lab in labels}
    def per_cell(lab, reduce, field='val_acc', fmt='pct'):
        return [facts.get(f"studies/cells/{k}.json", 'curves', field=field, reduce=reduce, fmt=fmt) for k in keys[lab]]
    first = {lab: facts.derive('mean', *per_cell(lab, 'first')) for lab in labels}
    runs = {lab: per_cell(lab, 'count', fmt='int') for lab in labels}
    stats = {lab: mean_curve_statistics('batch_norm', lab) for lab in labels}
    wider = stats[labels[1]][2] - stats[labels[1]][3] > stats[labels[0]][2] - stats[labels[0]][3]
    plain_runs = sorted(r.value for r in runs[labels[0]])
    def at_top(lab):  # the re-tuned rate is the largest candidate
        tune = next(r for r in reports['batch_norm']['rows'] if r['label'] == lab)['retune']
        return tune['chosen'] == max(tune['values'])
    show(f"**Reflection (batch_norm).** Best validation accuracy, mean over the folds: {acc[labels[0]]} without "
         f"BatchNorm, {acc[labels[1]]} with it "
         f"({facts.derive('difference', acc[labels[1]], acc[labels[0]], fmt='points')}); the claim's corrected "
         "interval is above. BatchNorm is ahead from the first epoch (validation accuracy after one epoch "
         f"{first[labels[1]]} against {first[labels[0]]}, mean over the folds), the faster optimisation Ioffe & "
         "Szegedy (2015) report, which Santurkar et al. (2018) trace to a smoother loss landscape rather than to "
         "less internal covariate shift. "
         + ("It does not narrow the gap between training and validation accuracy at the best epoch (the curve "
            "table: the BatchNorm net fits its training images more closely and still validates higher), so here it "
            "acts through optimisation more than as a regulariser. " if wider else
            "It also narrows the gap between training and validation accuracy at the best epoch (the curve table). ")
         + ("Both networks chose the largest of their candidate learning rates (the re-tuning list above), so the "
            "comparison is of each net at the best rate of the grid, not necessarily at its own best rate; the "
            "hypothesis's second half, that BatchNorm's best rate is at least as large, is consistent with that but "
            "not tested beyond it. " if all(at_top(lab) for lab in labels) else
            "The re-tuning list above gives each net's chosen rate; the hypothesis's second half compares them. ")
         + (f"Without BatchNorm at this rate the runs' lengths split: they end after "
            f"{facts.derive('min', *runs[labels[0]], fmt='int')} to {facts.derive('max', *runs[labels[0]], fmt='int')} "
            "epochs (early stopping with patience 5 on a noisy validation curve, or the epoch cap), which adds "
            "spread to the plain net's folds. " if plain_runs[-1] - plain_runs[0] >= 10 else "")
         + "The rates were chosen on fold 0, which is also one of the five compared folds: a small optimistic bias, "
         "shared by both settings.")

# %%
show_study('optimizer')

# %%
if current.get('optimizer'):
    rows = reports['optimizer']['rows']
    labels = [r['label'] for r in rows]
    acc = {lab: mean_acc('optimizer', lab) for lab in labels}
    chosen = {r['label']: (r.get('run_setting') or r['setting']) for r in rows}
    plain, momentum, adam = labels
    lr = {lab: chosen[lab]['model.init_args.lr'] for lab in labels}
    best_epoch = {lab: mean_curve_statistics('optimizer', lab)[0] for lab in labels}
    mu = chosen[momentum]['model.init_args.momentum']
    def order(values):
        return sorted(labels, key=values.__getitem__)
    by_mean = order(best_epoch)
    def best_epochs_of(lab):  # each fold's best epoch, from its cell
        cells = next(r for r in rows if r['label'] == lab)['cells']
        return [facts.get(f"studies/cells/{k}.json", 'curves', field='val_acc', reduce='argmax_epoch', fmt='int')
                for k in cells]
    inconclusive = all(c['verdict'] == 'inconclusive' for c in reports['optimizer']['claims'])
    by_median = order({lab: statistics.median(n.value for n in best_epochs_of(lab)) for lab in labels})
    show(f"**Reflection (optimizer).** Each optimiser at its own re-tuned rate (plain SGD {lr[plain]:g}, momentum 0.9 "
         f"at {lr[momentum]:g}, Adam at {lr[adam]:g}): best validation accuracy {acc[plain]}, {acc[momentum]} "
         f"({facts.derive('difference', acc[momentum], acc[plain], fmt='points')}) and {acc[adam]} "
         f"({facts.derive('difference', acc[adam], acc[plain], fmt='points')}), mean over the folds. "
         + ("Neither difference is told from zero, and both point estimates are under a point; the corrected "
            "intervals above still leave room for a few points either way, so this is a null result at this "
            "budget's power, not a shown equivalence. It sits with the counterpoint the reference names (Wilson et "
            "al. 2017: tuned SGD generalises as well) rather than with a gain in how far the net gets; what "
            "Sutskever et al. (2013) and Kingma & Ba (2015) show first is how fast. " if inconclusive
            else "The claims above give the verdicts. ")
         + "How fast is not resolved either: the best epoch, fold by fold, is "
         + "; ".join(f"{', '.join(best_epochs_of(lab))} with {name} (median {facts.derive('median', *best_epochs_of(lab), fmt='int')})"
                     for lab, name in ((plain, 'plain SGD'), (momentum, 'momentum'), (adam, 'Adam')))
         + (": the medians order the optimisers differently from the means of the curve table, so five folds with "
            "early stopping do not rank them by speed. " if by_median != by_mean else
            ": medians and means agree on the order. ")
         + f"Momentum {mu:g} multiplies the step by about 1 / (1 - {mu:g}) = {1 / (1 - mu):g} once the velocity "
         f"has built up, so its tuned {lr[momentum]:g} is an effective rate of about {lr[momentum] / (1 - mu):g}, "
         f"close to plain SGD's {lr[plain]:g}: tuned, the two take steps of a similar size, which would explain "
         "alike results, if they are alike; the data do not show that they are.")

# %%
show_study('weight_init')

# %% [markdown]
# **What the schemes do to the signal at the start** (`python benchmarks/init_signal.py --images 512`): the standard
# deviation of each layer's output before its activation, on the first training images, for the baseline net built
# from the same seed with each scheme. The theory behind the schemes is about this quantity, so it is measured, not assumed.

# %%
if (BENCH / 'init_signal.json').is_file():
    show(report.init_signal_markdown(BENCH))

# %%
if current.get('weight_init') and (BENCH / 'init_signal.json').is_file():
    rep = reports['weight_init']
    labels = ('init=default', 'init=normal', 'init=kaiming_normal')
    acc = {lab: mean_acc('weight_init', lab) for lab in labels}
    i_row = {r['label']: i for i, r in enumerate(rep['rows'])}
    study_file = 'studies/weight_init/study.json'
    def tune(lab, j):  # the candidate rate's score on the re-tuning fold
        return facts.get(study_file, 'rows', i_row[lab], 'retune', 'scores', j)
    def rate(lab, j):
        return facts.get(study_file, 'rows', i_row[lab], 'retune', 'values', j, fmt='lr')
    def tune_cell(lab, j):  # the cell file of a re-tuning candidate: the study's budget, the setting, that rate
        tune_ = rep['rows'][i_row[lab]]['retune']
        wanted = [*rep['budget'], f"--model.init_args.model.init_args.{lab}", f"--{tune_['key']}={tune_['values'][j]:g}"]
        for path in sorted((RESULTS / 'studies' / 'cells').glob('*.json')):
            cell = report.read_json(path)
            if cell['fold'] == tune_['fold'] and cell['overrides'] == wanted:
                return f"studies/cells/{path.name}"
        raise LookupError(wanted)
    def curve(file, reduce, fmt='int'):
        return facts.get(file, 'curves', field='val_acc', reduce=reduce, fmt=fmt)
    sig = '../benchmarks/results/init_signal.json'
    def std(init, layer):
        return facts.get(sig, 'inits', init, {'layer': layer}, 'std', fmt='sig3')
    signal = report.read_json(BENCH / 'init_signal.json')['inits']
    layers = [row_['layer'] for row_ in signal['default']]
    he_peak = max(signal['kaiming_normal'], key=lambda row_: row_['std'])['layer']  # where He's signal is largest
    normal_folds = [f"studies/cells/{k}.json" for k in rep['rows'][i_row['init=normal']]['cells']]
    at_chance = [curve(f, 'epochs_at_chance') for f in normal_folds]
    stuck = tune_cell('init=normal', 1)
    slow = tune_cell('init=normal', 0)
    he = next(i for i, c in enumerate(rep['claims']) if c['order'][-1] == 'init=kaiming_normal')
    he_link = ('claims', he, 'links', 0)
    he_p = facts.get(study_file, *he_link, 'p_value', fmt='p')
    he_family = facts.get(study_file, 'claims', he, 'family_size', fmt='int')
    he_tune = rep['rows'][i_row['init=kaiming_normal']]['retune']
    tie = abs(he_tune['scores'][0] - he_tune['scores'][1]) < 0.001
    best_epoch = {lab: mean_curve_statistics('weight_init', lab)[0] for lab in labels}
    tunes = {lab: rep['rows'][i_row[lab]]['retune'] for lab in labels}
    edges = {lab: t for lab, t in tunes.items() if t['chosen'] in (min(t['values']), max(t['values']))}
    show(f"**Reflection (weight_init).** Best validation accuracy, mean over the folds, each scheme at the rate its "
         f"re-tuning chose: {acc['init=default']} with PyTorch's default, {acc['init=normal']} with N(0, 0.01) "
         f"({facts.derive('difference', acc['init=normal'], acc['init=default'], fmt='points')}) and "
         f"{acc['init=kaiming_normal']} with He's normal "
         f"({facts.derive('difference', acc['init=kaiming_normal'], acc['init=default'], fmt='points')}). "
         "*The premise.* The hypothesis took the default to be variance-preserving, and the measurement above "
         "says it is not. PyTorch's default draws conv and linear weights from U(-1/sqrt(fan-in), 1/sqrt(fan-in)), "
         "which is the 'standard initialization' Glorot & Bengio (2010) start from and show to change the signal "
         "from layer to layer (their study used tanh, sigmoid and softsign units, not ReLU); its variance, "
         "1/(3 fan-in), is a sixth of what He et al. (2015) give a ReLU layer. Here the signal shrinks layer by "
         f"layer (output std {std('default', layers[0])} after the first conv, {std('default', layers[-1])} at the "
         f"logits); N(0, 0.01) shrinks it far faster ({std('normal', layers[0])} to {std('normal', layers[-1])}); "
         f"He's scheme keeps it of order one ({std('kaiming_normal', layers[0])} after the first conv, rising to "
         f"{std('kaiming_normal', he_peak)} at {he_peak}, {std('kaiming_normal', layers[-1])} at the logits: max "
         "pooling of ReLU outputs raises the second moment, which the derivation does not count). The default also "
         "draws its biases at random where the other two schemes start them at zero, so the arms differ in "
         "that too. "
         f"*N(0, 0.01).* It trains, but only after a plateau at chance: its five folds at the chosen rate spent "
         f"{', '.join(at_chance)} epochs below 15% before they started to learn. On the "
         f"re-tuning fold, at {rate('init=normal', 1)} early stopping (patience 5) ended the run on that plateau "
         f"after {curve(stuck, 'count')} epochs ({tune('init=normal', 1)}), and at {rate('init=normal', 0)} the run "
         f"left it only after {curve(slow, 'epochs_at_chance')} epochs and was still improving at the "
         f"{curve(slow, 'count')}-epoch cap ({tune('init=normal', 0)}): the choice of "
         f"{rate('init=normal', 2)} rests on a comparison the budget cut short, not on rates at which the net "
         "cannot learn. The plateau is the trace of the vanishing signal; where the net ends is not told from the "
         f"default (claims above: the interval spans both signs), and it needs more epochs to get there (best "
         f"epoch {best_epoch['init=normal']:.1f} against {best_epoch['init=default']:.1f}, mean over the folds). "
         f"*He's normal.* Its larger logits at the start make the largest rate diverge in the first epoch without "
         f"BatchNorm ({tune('init=kaiming_normal', 2)} at {rate('init=kaiming_normal', 2)}); "
         + (f"{rate('init=kaiming_normal', 0)} and {rate('init=kaiming_normal', 1)} tied on the re-tuning fold "
            f"({tune('init=kaiming_normal', 0)} and {tune('init=kaiming_normal', 1)}), so the choice between them "
            "was a coin flip. " if tie else "")
         + f"At {rate('init=kaiming_normal', 0)} it ends below the default "
         f"({facts.get(study_file, *he_link, 'mean_difference', fmt='points')}, 95% CI "
         f"{facts.get(study_file, *he_link, 'ci_low', fmt='points')} to "
         f"{facts.get(study_file, *he_link, 'ci_high', fmt='points')}, p {he_p} for a difference; adjusted for the "
         f"study's {he_family} claims, p {facts.derive('bonferroni', he_p, he_family, fmt='p')}), so equivalence "
         "within a point is not shown, and the difference, a test the claim did not set out to make, is not "
         "established either. "
         + ("No scheme's best rate is bracketed by its grid: "
            + "; ".join(f"{lab} chose its {'largest' if t['chosen'] == max(t['values']) else 'smallest'} candidate"
                        for lab, t in edges.items())
            + ", so the comparison is of each scheme at the best rate of its grid, not necessarily at its own. "
            if len(edges) == len(labels) else "")
         + "He et al.'s gain is for deep plain nets, where a "
         "shrinking signal compounds over tens of layers; over this net's five weight layers the default's shrinking "
         "leaves small but trainable logits.")

# %%
for name in ['augmentation', 'transfer_learning', 'best_model']:
    show_study(name)

# %% [markdown]
# ## 6. Compute spent per study
#
# Wall time of every cell on this machine's CPU; the total counts each cell once, however many studies share it.
# A study re-run at its file's budget is listed twice: its earlier round (shown without a verdict above), and the
# runs of the final budget stored so far.

# %%
spent = [(rep, "final" if current[n] else "earlier round") for n, rep in reports.items()]
spent += [(p, "final, in progress") for n in [*report.STUDY_ORDER, "best_model"] if (p := in_progress(n)) is not None]
show(report.compute_table([r for r, _ in spent], RESULTS, [b for _, b in spent]))

# %% [markdown]
# ## 7. The best model
#
# The `best_model` study (`configs/studies/best_model.yaml`) trains the FastNet recipe (`configs/cifar10/fast.yaml`:
# airbench94 written here at a quarter of its compute, BatchNorm, GELU, Nesterov momentum, label smoothing, flips and
# translations, lookahead averaging, test-time augmentation) on all training images, once per seed, and tests each
# run once on the test images; each of its ablations removes one ingredient (BatchNorm and GELU stay in every
# run). Below: the full recipe's
# test accuracy over the seeds stored so far, then the error analysis of one of its runs against the baselines (the
# baseline of `make train`, and the tuned baseline of `tuned.yaml`, each one run on its training / validation split tested
# at its best validation epoch): accuracy per class, the most frequent confusions, calibration, and the mistakes
# the best model is surest of.

# %%
best_source = None
if "best_model" in reports and current["best_model"]:
    best_source = "studies/best_model/study.json"
elif in_progress("best_model") is not None:
    best_source = "studies/best_model/study_progress.json"
best_rows = facts.read(best_source)["rows"] if best_source else []
full = next((r for r in best_rows if r["values"] and r["label"] == best_rows[0]["label"]), None)
if full is None:
    print("no run of the best model's full recipe is stored yet")
else:
    seeds_done = len(full["values"])
    cells = {k: report.read_json(RESULTS / "studies" / "cells" / f"{k}.json") for k in full["cells"]}
    show(report.markdown_table(
        ["seed", "test accuracy %", "expected calibration error", "epochs", "training minutes (one thread)"],
        [(c["seed"], f"{100 * c['final']['test_acc']:.2f}", f"{c['final']['test_ece']:.4f}", c["epochs"],
          f"{c['wall_s'] / 60:.0f}") for c in cells.values()]))
    mean = facts.get(best_source, "rows", {"label": full["label"]}, "summary", "mean", fmt="pct2")
    accs = [facts.get(f"studies/cells/{k}.json", "final", "test_acc") for k in full["cells"]]
    spread = (f", sd {facts.get(best_source, 'rows', {'label': full['label']}, 'summary', 'std', fmt='abs_points2')}"
              f" over the seeds (from {facts.derive('min', *accs, fmt='pct2')} to "
              f"{facts.derive('max', *accs, fmt='pct2')})"
              if seeds_done > 1 else ", one seed so far")
    target = 0.90  # the study's stated target (issue #16), a constant of the method
    sampling = ""
    if arrays is not None:  # the binomial standard error of one test accuracy at this level on the test images
        n_test = len(arrays.test_labels)
        sampling = (f" (one run's test accuracy at this level has a binomial standard error of "
                    f"{100 * math.sqrt(mean.value * (1 - mean.value) / n_test):.2f} points on the {n_test:,} "
                    "test images)")
    show(f"The full recipe reaches a mean test accuracy of **{mean}** over {seeds_done} seed"
         f"{'s' if seeds_done > 1 else ''}{spread}: "
         + ("at or above" if mean.value >= target else "below") + f" the study's target of {target:.0%}{sampling}. "
         + ("The ablations have not all run, so which ingredient carries how much is not measured yet (the progress "
            "table above lists what is stored)." if best_source.endswith("progress.json") else ""))
    ablated = [r for r in best_rows if r.get("minus_reference")]
    def ablation_name(row):  # what the ablation removes, in the words of the claim it tests
        return report.ablated_ingredient(row["claims"][0]) + " removed" if row.get("claims") else row["label"]
    def retested(row):  # an evaluation-only setting: the reference runs' checkpoints tested again, not retrained
        return all("tested_from" in report.read_json(RESULTS / "studies" / "cells" / f"{k}.json")
                   for k in row["cells"])
    def image_by_image(row):  # McNemar's exact test per seed, on the test images exactly one of the two got right
        return "".join(f"; seed {t['run']}: {t['only_reference_right']} images only the full recipe gets right, "
                       f"{t['only_setting_right']} only the ablation, McNemar p {t['p']:.2g}"
                       for t in row["minus_reference"].get("per_image", []))
    if ablated and best_source.endswith("progress.json"):
        show("Ablations stored so far, each minus the full recipe over the seeds both have (points; a first look "
             "with no interval over seeds, and no verdict until every ablation is in): " + "; ".join(
                 f"{ablation_name(r)} {100 * r['minus_reference']['mean']:+.2f} ({r['minus_reference']['runs']} "
                 f"seed{'s' if r['minus_reference']['runs'] > 1 else ''}"
                 + ("; the full recipe's own checkpoints tested again" if retested(r) else "") + image_by_image(r)
                 + ")" for r in ablated) + ". McNemar's test (Dietterich 1998) asks only whether two trained "
                 "networks differ by more than the test images' sampling error; it says nothing of another seed, "
                 "which moves a run by about the sd above. A small p for one seed is therefore a difference between "
                 "two networks, not yet an effect of the ingredient: that needs the three seeds' paired test.")
    plain_sgd = next((r for r in best_rows if r["values"] and r["setting"].get("model.init_args.momentum") == 0.0), None)
    if plain_sgd is not None:  # an ablation at the recipe's learning rate is not a comparison with tuned plain SGD
        sgd_minus_recipe = (plain_sgd["minus_reference"]["mean"] if plain_sgd.get("minus_reference")
                            else plain_sgd["summary"]["mean"] - full["summary"]["mean"])  # seeds paired: all 3
        recipe_cell = report.read_json(RESULTS / "studies" / "cells" / f"{full['cells'][0]}.json")
        hp = recipe_cell["resolved_config"]["model"]["init_args"]
        study12 = reports.get("optimizer") if current.get("optimizer") else None
        show(f"Read the momentum ablation for what it removes: plain SGD at the recipe's learning rate ({hp['lr']:g}). "
             f"With momentum {hp['momentum']:g} a constant gradient moves the weights 1 / (1 - {hp['momentum']:g}) = "
             f"{1 / (1 - hp['momentum']):.1f} times as far per step, so without it every step is that much shorter, "
             "and 8 epochs no longer reach as far: the ablation's "
             f"{100 * sgd_minus_recipe:+.2f} points mix the loss of momentum with a learning "
             "rate tuned for momentum. It does not say that momentum beats plain SGD at its own best rate"
             + (": study 12 tested that on the baseline CNN with each optimiser's rate re-tuned, and found "
                f"{reports['optimizer']['claims'][0]['links'][0]['mean_difference'] * 100:+.1f} points, "
                f"{reports['optimizer']['claims'][0]['verdict']}." if study12 else "."))
    if best_source.endswith("study.json"):  # the finished study: its hypothesis' second half, claim by claim
        claims = facts.read(best_source)["claims"]
        effect = {i: facts.get(best_source, "claims", i, "links", 0, "mean_difference", fmt="points")
                  for i in range(len(claims))}  # fmt: skip
        held = [f"{report.ablated_ingredient(c['claim'])} ({effect[i]})" for i, c in enumerate(claims)
                if c["verdict"] == "supported"]  # fmt: skip
        open_ = [f"{report.ablated_ingredient(c['claim'])} ({effect[i]})" for i, c in enumerate(claims)
                 if c["verdict"] != "supported"]  # fmt: skip
        show(f"**The hypothesis' second half, every ingredient contributes,** is not shown: removing {len(held)} of "
             f"the {len(claims)} ingredients lowers the test accuracy beyond what the seeds resolve ("
             + "; ".join(held) + "); for the others ("
             + "; ".join(open_) + ") three seeds do not tell a loss from none, and an ablation that scores higher "
             "on average is no evidence that the ingredient hurts. These comparisons are on the test images, the "
             "one place the test set serves more than one final model here: the recipe itself was fixed beforehand "
             "(airbench94's), not chosen on these numbers.")

# %%
baseline_metrics = RESULTS / "cifar10" / "baseline" / "test_metrics.json"
best_dir = RESULTS / "cifar10" / "best_model"
best_runs = sorted(best_dir.glob("seed*/test_metrics.json"))
compared = {"baseline (make train)": baseline_metrics,  # lr 0.01, 45,000 / 5,000, 20 epochs, best-val checkpoint
            "tuned baseline": RESULTS / "cifar10" / "tuned" / "test_metrics.json",  # tuned.yaml, lr 0.04
            **{f"best model ({p.parent.name})": p for p in best_runs[:1]}}
compared = {name: report.read_json(path) for name, path in compared.items() if path.is_file()}
if best_runs and len(compared) > 1:
    per_seed = [report.read_json(p) for p in best_runs]
    per_class = {**{n: m for n, m in compared.items() if not n.startswith("best model")}, "best model": per_seed}
    show(f"Per class, on the test images, the best model over its {len(per_seed)} stored seed"
         f"{'s' if len(per_seed) > 1 else ''} (the last column: the best model's mean minus the first baseline):")
    show(report.per_class_markdown(per_class))
    if len(per_seed) > 1:
        names = per_seed[0]["class_names"]
        first = next(iter(per_class.values()))["metrics"]
        sds = {c: statistics.stdev(m["metrics"][f"test_acc_{c}"] for m in per_seed) for c in names}
        gains = {c: statistics.fmean(m["metrics"][f"test_acc_{c}"] for m in per_seed) - first[f"test_acc_{c}"]
                 for c in names}  # fmt: skip
        widest, smallest = max(sds, key=sds.get), min(gains, key=gains.get)
        show(f"A seed moves a class's accuracy by up to {100 * sds[widest]:.2f} points (sd over the seeds, "
             f"{widest}), and the overall accuracy by {100 * statistics.stdev(m['metrics']['test_acc'] for m in per_seed):.2f}. "
             f"The smallest per-class gain over the first baseline ({smallest}, {100 * gains[smallest]:+.1f} points) "
             f"is {gains[smallest] / sds[widest]:.0f} times that largest spread, so every class gains by more than "
             "a seed moves it; the baselines are one run each, so their own seed spread is not in the table.")
    for name, metrics in compared.items():
        show(f"The most frequent confusions of the {name} (test images of the true class):")
        show(report.confusion_pairs_markdown(metrics))
    best_name = next(reversed(compared))
    show_fig(report.confusion_figure(compared[best_name], f"{best_name}: test confusion (row-normalised)"))
else:
    print("no tested best-model run in", best_dir)

# %%
for name, folder in {"tuned baseline": RESULTS / "cifar10" / "tuned"}.items():  # the baselines' calibration
    if (folder / "predictions.csv").is_file() and arrays is not None:
        pred, conf = report.read_predictions(folder / "predictions.csv")
        correct = [p == y for p, y in zip(pred, arrays.test_labels.tolist(), strict=True)]
        bins = [b for b in report.reliability_bins(conf, correct) if b["count"]]
        over = sum(b["accuracy"] < b["confidence"] for b in bins)
        show_fig(report.reliability_figure(conf, correct, f"{name}: calibration on the test images"))
        show(f"The {name}: in {over} of its {len(bins)} filled confidence bins the accuracy is below the mean "
             "confidence (over-confident there).")

# %%
predictions = sorted(best_dir.glob("seed*/predictions.csv"))
if predictions and arrays is not None:
    pred, conf = report.read_predictions(predictions[0])
    labels = arrays.test_labels.tolist()
    correct = [p == y for p, y in zip(pred, labels, strict=True)]
    run_name = f"best model ({predictions[0].parent.name})"
    show_fig(report.reliability_figure(conf, correct, f"{run_name}: calibration on the test images"))
    show_fig(report.confident_mistakes_figure(arrays.test_images, labels, pred, conf, arrays.class_names,
                                              f"{run_name}: its most confident mistakes (true -> predicted, "
                                              "confidence)"))
    bins = [b for b in report.reliability_bins(conf, correct) if b["count"]]
    under = sum(b["accuracy"] > b["confidence"] for b in bins)
    monotone = all(lo["accuracy"] <= hi["accuracy"] for lo, hi in itertools.pairwise(bins))
    crowded = max(bins, key=lambda b: b["count"])
    tested = report.read_json(predictions[0].parent / "test_metrics.json")  # the tested run's own files
    recipe = yaml.safe_load((predictions[0].parent / "config.yaml").read_text())["model"]["init_args"]
    target = 1 - recipe["label_smoothing"] + recipe["label_smoothing"] / len(arrays.class_names)
    baselines = {n: m["metrics"]["test_ece"] for n, m in compared.items() if not n.startswith("best model")}
    names = arrays.class_names
    surest = report.confident_mistakes(pred, conf, labels)
    vehicles = {"airplane", "automobile", "ship", "truck"}
    animal_true = sum(names[labels[i]] not in vehicles for i in surest)
    common_true = collections.Counter(names[labels[i]] for i in surest).most_common(1)[0]
    common_pair = collections.Counter((names[labels[i]], names[pred[i]]) for i in surest).most_common(1)[0]
    smoothing_check = ""  # the label-smoothing ablation of the same seed, where it is stored
    no_smoothing = [r for r in best_rows if r["setting"] == {"model.init_args.label_smoothing": 0.0} and r["cells"]]
    if no_smoothing and full is not None:  # every seed of the ablation against every seed of the full recipe
        def eces(row):
            return [report.read_json(RESULTS / "studies" / "cells" / f"{k}.json")["final"]["test_ece"]
                    for k in row["cells"]]  # fmt: skip
        without, with_ = eces(no_smoothing[0]), eces(full)
        smoothing_check = (f" The same recipe without label smoothing (the ablation, {len(without)} seeds) has "
                           f"expected calibration errors of {', '.join(f'{e:.3f}' for e in without)}, against "
                           f"{', '.join(f'{e:.3f}' for e in with_)} with it"
                           + (": in every seed the smoothed net is the worse calibrated, so smoothing is what "
                              "makes this net under-confident." if max(without) < min(with_) else
                              ": the seeds overlap, so smoothing alone does not explain the calibration."))
    show(f"Calibration, read from the diagram: in {under} of the {len(bins)} confidence bins that hold images, the "
         "accuracy stands above the mean confidence, so the net is under-confident: it is right more often than "
         f"its probabilities say (expected calibration error {tested['metrics']['test_ece']:.3f}"
         + (", against " + " and ".join(f"{e:.3f} for the {n}" for n, e in baselines.items())
            + "; the error measures the size of the gap, not its direction" if baselines else "") + "). "
         f"The recipe's label smoothing ({recipe['label_smoothing']:g}) trains the true class towards a probability "
         f"of {target:.2f}, not 1, and the most crowded bin, {crowded['low']:.2f} to {crowded['high']:.2f} "
         f"({100 * crowded['count'] / len(conf):.0f}% of the images), "
         + ("holds that target. " if crowded["low"] <= target < crowded["high"] else "does not hold that target. ")
         + ("Its ranking is sound (accuracy rises from each bin to the next: the surer, the more often right), so "
            if monotone else "Accuracy does not rise in every bin with the confidence, but ")
         + "one temperature fitted on held-out images would rescale the probabilities without changing a single "
         "prediction (this recipe trains on all the training images, so such a split would have to be kept back "
         "first)." + smoothing_check + f" Of the {len(surest)} surest mistakes shown, {animal_true} have an animal "
         f"as their true class and {len(surest) - animal_true} a vehicle; the commonest true class among them is "
         f"{common_true[0]} ({common_true[1]}), and the commonest pair {common_pair[0][0]} -> {common_pair[0][1]} "
         f"({common_pair[1]}). Look at the pictures before reading them as the model's errors: CIFAR-10 has some "
         "wrong labels (Northcutt et al. 2021 count them in its test set), and among the surest mistakes such an "
         "image is the likeliest.")
elif predictions:
    print("CIFAR-10 is not available here: the calibration and mistakes figures need the test labels and images")

# %% [markdown]
# ## 8. Where the study stands
#
# Which studies ran at the budget their study file states (their verdicts are above, claim by claim), which are
# stored from an earlier, smaller budget (shown without a verdict), and which have no results yet; the plan and the
# cost of what is left are in `configs/studies/README.md`.

# %%
shipped = [*report.STUDY_ORDER, "best_model"]
groups = {
    "At their study file's budget": [n for n in reports if current[n]],
    "In progress at their file's budget (stored runs shown above, no verdict yet)": [
        n for n in shipped if in_progress(n) is not None],
    "From an earlier, smaller budget (no verdict; re-run planned)": [n for n in reports if not current[n]],
    "No results yet": [n for n in shipped if n not in reports and in_progress(n) is None],
}
show("\n".join(f"- **{title}**: {', '.join(names)}" for title, names in groups.items() if names))
verdicts = [(n, c) for n in groups["At their study file's budget"] for c in reports[n].get("claims", [])]
from lit_mc.studies.stats import holm
tested = [(n, c) for n, c in verdicts if c.get("p_value") is not None and math.isfinite(c["p_value"])]
family = dict(zip((id(c) for _, c in tested), holm([c["p_value"] for _, c in tested]), strict=True))
def holm_cell(c, q):
    return f"{q:.3f}" if q is not None and math.isfinite(q) else "-"
show(report.markdown_table(
    ["study", "claim", "verdict (Holm within the study)", "p (Holm within the study)", "p (Holm over every tested claim)"],
    [(n, c["claim"], c["verdict"], holm_cell(c, c.get("p_holm")), holm_cell(c, family.get(id(c)))) for n, c in verdicts]))
if tested:
    survive = [c["claim"] for _, c in tested if family[id(c)] < 0.05]
    momentum = [c["claim"] for n, c in tested if n == "best_model" and c["claim"] in survive
                and "momentum" in c["claim"]]  # fmt: skip
    show(f"Each study corrects for its own claims (Holm). Read as one family of the {len(tested)} claims tested over "
         f"folds or seeds (the single-run claims above are untested), the report's strongest reading, "
         f"{len(survive)} of them {'stays' if len(survive) == 1 else 'stay'} below 0.05"
         + (f": {'; '.join(survive)}." if survive else ".")
         + (" The momentum ablation ran plain SGD at the recipe's learning rate, tuned for momentum (the best-model "
            "section): it shows that this recipe needs its momentum, not that momentum beats plain SGD at a "
            "re-tuned rate." if momentum else "")
         + " A claim supported within its study but not over the whole family is evidence to follow up, not a "
         "settled result.")

# %%
if os.environ.get("LIT_MC_FACTS"):  # the test reads every number of the prose again from its source
    facts.save(os.environ["LIT_MC_FACTS"])
print(f"{len(facts.used)} numbers in the prose, each read from its results file")
