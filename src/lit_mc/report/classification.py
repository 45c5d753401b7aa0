"""The CIFAR-10 report: studies (tables, claims, figures, compute), single runs, cross-validation, overfit tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from lit_mc.io import atomic_save_figure
from lit_mc.plots import ran_at, setting_value
from lit_mc.report.common import bench_root, markdown_table, read_json, results_root

if TYPE_CHECKING:
    from lit_mc.report.facts import Facts
    from lit_mc.studies.store import ResultsStore

# the shipped studies, in the order the CIFAR-10 report tells them
STUDY_ORDER = (
    "learning_rate", "batch_size", "lr_batch_size", "tuning_confirmed", "depth", "width", "kernel_size", "pooling",
    "dropout", "augmentation", "batch_norm", "weight_init", "optimizer", "transfer_learning",
)  # fmt: skip


# -- studies --------------------------------------------------------------------------------------------------
def available_studies(root: Path | None = None) -> list[str]:
    """Shipped studies with results, in report order, then any others."""
    studies = (root or results_root()) / "studies"
    found = {p.parent.name for p in studies.glob("*/study.json")}
    return [s for s in STUDY_ORDER if s in found] + sorted(found - set(STUDY_ORDER))


def load_study(name: str, root: Path | None = None) -> dict[str, Any]:
    return read_json((root or results_root()) / "studies" / name / "study.json")


def load_study_progress(name: str, root: Path | None = None) -> dict[str, Any] | None:
    """A study's stored runs while its campaign is under way (``lit-mc study report FILE``), else None."""
    path = (root or results_root()) / "studies" / name / "study_progress.json"
    return read_json(path) if path.is_file() else None


def study_cells(report: dict[str, Any], root: Path | None = None) -> dict[str, dict]:
    cells = (root or results_root()) / "studies" / "cells"
    return {key: read_json(cells / f"{key}.json") for row in report["rows"] for key in row["cells"]}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


CHANCE_BAND = 0.15  # a CIFAR-10 accuracy below this (chance is 0.10) is a run that never learned


def repeats(report: dict[str, Any]) -> tuple[int, str]:
    """How many runs a setting has and what they are: seeds on the same data (a seed study) or folds."""
    if report.get("seeds"):
        return len(report["seeds"]), "seeds"
    return report["folds"], "folds" if report["folds"] > 1 else "run (a hold-out split)"


def study_markdown(report: dict[str, Any], verdicts: bool = True) -> str:
    """Hypothesis, reference, budget, the metric per setting with its error, and the verdicts (left out with
    ``verdicts=False``: results of an earlier budget that could not carry them)."""
    rows = []
    for row in report["rows"]:
        s = row["summary"]
        flops = f"{row['flops'] / 1e6:.0f}" if row.get("flops") else "-"
        params = f"{row['params'] / 1e3:.0f}k" if row.get("params") else "-"
        ci = f"[{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]" if s["n"] > 1 else "one run"
        mean = f"{_pct(s['mean'])} ± {_pct(s['std'])}" if s["n"] > 1 else _pct(s["mean"])
        label = row["label"] + (" (diverged)" if row.get("diverged") else "")
        label += ran_at(row)  # a re-tuned rate: the label names the setting, this what its folds ran with
        if report["metric"] == "val_acc" and (stuck := sum(v < CHANCE_BAND for v in row["values"])):
            label += f" (at chance in {stuck} of {len(row['values'])} runs)"
        rows.append([label, mean, ci, params, flops, f"{row['wall_s'] / 60:.1f}"])
    scored = "at each run's best epoch" if report.get("score") == "best" else "at the last epoch"
    table = markdown_table(
        ["setting", f"{report['metric']} % {scored} (mean ± std)", "95% t-interval (uncorrected)", "params",
         "MFLOPs/image", "minutes"], rows,
    )  # fmt: skip
    n, word = repeats(report)
    if any(row["summary"]["n"] > 1 for row in report["rows"]) and word == "seeds":
        table += ("\n\nThe t-interval of a setting is over its seeds: independent runs on the same training and "
                  "test images, so it holds the training noise, not the sampling of the images.")  # fmt: skip
    elif any(row["summary"]["n"] > 1 for row in report["rows"]):
        table += (
            "\n\nThe t-interval of a setting treats its folds as independent; they share training images, "
            "so it is too narrow" + (": the verdicts below use the corrected interval of each difference." if verdicts
                                     else ".")
        )  # fmt: skip
    if retune := retune_markdown(report):
        table += "\n\n" + retune
    budget = " ".join(b for b in report["budget"] if "progress_bar" not in b)
    budget = f"budget `{budget}`" if budget else "the base config's own budget"
    scored = "scored on the test images" if report["metric"].startswith("test") else "scored on validation"
    parts = [
        f"**Hypothesis.** {report['hypothesis']}",
        f"**Reference.** {report['reference']}",
        f"**Experiment.** {len(report['rows'])} settings x {n} {word}, {budget}, {scored}.",
        table,
    ]
    if not verdicts:
        return "\n\n".join(parts)
    if "claims" not in report:  # a report from before claims: its one verdict line
        return "\n\n".join([*parts, f"**Verdict:** {report['verdict']}"])
    test = "paired t-test over the seeds" if word == "seeds" else "corrected resampled t-test over the folds"
    parts += [f"**Verdicts, claim by claim** ({test}, Holm-adjusted):", claims_markdown(report)]
    if per_image := per_image_markdown(report):
        parts.append(per_image)
    if math.isfinite(report.get("mde", math.nan)):
        parts.append(f"Minimum detectable effect at this budget: {100 * report['mde']:.1f} points "
                     f"({report['mde_note']}).")  # fmt: skip
    return "\n\n".join(parts)


def per_image_markdown(report: dict[str, Any]) -> str:
    """A tested study's comparisons run by run on the test images (McNemar's exact test, ``per_image`` of each
    comparison): whether each pair of trained networks differs by more than the test set's sampling error. Empty
    when no comparison has them (a study scored on validation folds, or cells stored before they were kept)."""
    rows = [[c["label"], c["against"], t["run"], t["only_setting_right"], t["only_reference_right"], f"{t['p']:.2g}"]
            for c in report.get("comparisons", []) for t in c.get("per_image", [])]  # fmt: skip
    if not rows:
        return ""
    head = ["setting", "against", "seed" if report.get("seeds") else "fold", "images only the setting gets right",
            "only the other", "McNemar p"]  # fmt: skip
    return ("Run by run on the test images (McNemar's exact test; it measures the test set's sampling error for two "
            "trained networks, not the spread over seeds, which the verdicts above use):\n\n"
            + markdown_table(head, rows))  # fmt: skip


CHANCE_PLATEAU = 0.15  # validation accuracy of a candidate that diverged or never left chance (10 classes)


def retune_markdown(report: dict[str, Any]) -> str:
    """How each setting's learning rate was chosen (the candidates' scores on the retuning fold), flagging a choice
    at the edge of the candidates (the best rate may lie beyond them) and candidates that single runs cannot tell
    apart (the best and the runner-up among those that learned within the error of a difference of two runs,
    sqrt(2) x twice the binomial error)."""
    lines = []
    for row in report["rows"]:
        tune = row.get("retune")
        if not tune or not tune.get("values"):
            continue
        values, scores = tune["values"], tune["scores"]
        chosen = tune["chosen"]
        tried = ", ".join(f"{v:g}: {_pct(s)}" for v, s in zip(values, scores, strict=True))
        text = f"{row['label']}: {tried} (fold {tune['fold']}) -> {chosen:g}"
        notes = []
        if len(values) > 1 and chosen in (min(values), max(values)):
            notes.append(f"the {'largest' if chosen == max(values) else 'smallest'} candidate, so the best rate may "
                         "lie beyond the grid")  # fmt: skip
        n = row.get("val_images")
        learned = sorted(((s, v) for v, s in zip(values, scores, strict=True) if s > CHANCE_PLATEAU), reverse=True)
        if n and len(learned) > 1:  # a diverged or never-learning candidate says nothing about the close ones
            (best, _), (second, runner_up) = learned[:2]
            error = 2 * (2 * best * (1 - best) / n) ** 0.5
            if best - second <= error:
                gap = f"the runner-up {runner_up:g} is {100 * (best - second):.2f} points behind"
                notes.append(f"{gap}, within the {100 * error:.2f}-point error of a difference of two single runs: "
                             "not resolved")  # fmt: skip
        lines.append(f"- {text}" + (f" ({'; '.join(notes)})" if notes else ""))
    return ("**Learning rate re-tuned per setting** (candidate: validation accuracy %):\n" + "\n".join(lines)
            if lines else "")  # fmt: skip


def ablated_ingredient(claim: str) -> str:
    """What a leave-one-out ablation removes, in the words of the claim it tests: "label smoothing helps" ->
    "label smoothing" (the best-model study names each claim after its ingredient)."""
    return claim.split(" help")[0]


def claims_markdown(report: dict[str, Any]) -> str:
    """One line per claim: its verdict in words with the numbers it rests on."""
    return "\n".join(f"- **{c['claim']}** — {c['verdict_text']}" for c in report["claims"])


_READING = {
    "supported": "the {repeats} agree beyond the corrected error, so the claim holds at this budget",
    "contradicted": "the data go against the claim beyond the corrected error, so at this budget the reference's "
    "expectation fails here",
    "untested": "one run per setting gives no error bar, so this is a reading of single runs",
}


def claims_reflection(facts: Facts, name: str) -> str:
    """Each claim of a stored study read in words, with its numbers taken through ``facts`` (so the prose cannot
    drift from ``studies/<name>/study.json``): the effect per link with its CI and the detectable effect, the
    Holm-adjusted p, and what the verdict means at the study's power."""
    file = f"studies/{name}/study.json"
    report = facts.read(file)
    lines = []
    for i, claim in enumerate(report.get("claims", [])):
        parts, small = [], []
        for j, link in enumerate(claim["links"]):
            link_path = ("claims", i, "links", j)
            get = lambda *path, fmt="points", at=link_path: facts.get(file, *at, *path, fmt=fmt)  # noqa: E731
            diff = get("mean_difference")
            text = f"{link['label']} against {link['against']}: {diff}"
            if link["df"] and math.isfinite(link["ci_low"]):
                text += f" (95% CI {get('ci_low')} to {get('ci_high')}"
                if math.isfinite(link["mde"]):
                    mde = get("mde", fmt="abs_points")
                    text += f"; detectable at this budget: {mde}"
                    small.append((link["label"], abs(diff.value) < mde.value))
                if link.get("differences"):  # the runs one by one: a mean can hide one run going the other way
                    higher = facts.get(file, *link_path, "differences", reduce="positive", fmt="int")
                    runs = facts.get(file, *link_path, "differences", reduce="count", fmt="int")
                    text += f"; higher in {higher} of its {runs} {'seeds' if report.get('seeds') else 'folds'}"
                text += ")"
            parts.append(text)
        verdict = claim["verdict"]
        reading = _READING.get(verdict, "").format(repeats="seeds" if report.get("seeds") else "folds")
        if verdict == "inconclusive" and claim["direction"] == "equal":
            margin = facts.get(file, "claims", i, "margin", fmt="abs_points")
            reading = (f"equivalence (two one-sided tests) needs the difference to lie surely within ±{margin}, and "
                       "the interval here reaches past that, so the data show neither the equivalence nor a "
                       "difference")  # fmt: skip
        elif verdict == "inconclusive":
            below = [label for label, is_small in small if is_small]
            if small and len(below) == len(small):
                reading = (
                    "the difference is smaller than the effect this budget detects with 80% power, so this "
                    "is a null result of low power: it neither confirms nor refutes the reference"
                )
            elif below:
                reading = (
                    f"{', '.join(below)} stays below the detectable effect while the other links reach it, "
                    "so the claim as a whole is not shown: for the small links a null result of low power, "
                    "for the others not beyond chance after the correction"
                )
            else:
                reading = (
                    "the difference reaches the detectable size, but after the correction for overlapping "
                    "training sets and for the number of claims it is not beyond chance"
                )
        sentence = f"- *{claim['claim']}*: **{verdict}**. {'; '.join(parts)}"
        if math.isfinite(claim["p_holm"]):
            p = facts.get(file, "claims", i, "p_holm", fmt="p")
            family = facts.get(file, "claims", i, "family_size", fmt="int")
            test = "the equivalence test's " if claim["direction"] == "equal" else ""
            sentence += f"; {test}Holm-adjusted p {p} over {family} claim" + ("" if family.value == 1 else "s")
        lines.append(f"{sentence}: {reading}.")
    return "\n".join(lines)


def budget_transfer_markdown(name: str, root: Path | None = None) -> str:
    """Per claim: verdict and effect at the study's budget and at its second budget, and whether they agree
    (``lit-mc study run FILE --second-budget``); empty when the second budget has not run."""
    folder = (root or results_root()) / "studies" / name
    second = folder / "study_second_budget.json"
    if not second.is_file():
        return ""
    report = read_json(second)
    transfer = report.get("budget_transfer")
    if transfer is None and (folder / "study.json").is_file():
        transfer = read_json(folder / "study.json").get("budget_transfer")
    if not transfer:
        return ""
    points = lambda values: ", ".join(f"{100 * v:+.1f}" for v in values)  # noqa: E731
    rows = [[t["claim"], t["verdict"], points(t["effects"]), t["verdict_second_budget"],
             points(t["effects_second_budget"]), "yes" if t["agree"] else "no"] for t in transfer]  # fmt: skip
    budget = " ".join(b for b in report["budget"] if "progress_bar" not in b)
    table = markdown_table(["claim", "verdict", "effect (points)", "at the second budget", "effect there",
                            "agree"], rows)  # fmt: skip
    return f"**The same claims at a second budget** (`{budget}`, {report['folds']} folds):\n\n{table}"


def study_console_tables(report: dict[str, Any]) -> list[Any]:
    """What ``lit-mc study run|report`` prints: the settings table, then each claim's verdict."""
    from rich.table import Table

    table = Table(title=f"{report['name']}: {report['hypothesis']}")
    for column in ("setting", f"{report['metric']} mean", "std", "95% CI", "per fold", "params", "MFLOPs", "min"):
        table.add_column(column)
    for row in report["rows"]:
        s = row["summary"]
        spread = [f"{s['std']:.4f}", f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]"] if s["n"] > 1 else ["-", "one run"]
        cells = [f"{s['mean']:.4f}", *spread, " ".join(f"{v:.4f}" for v in row["values"])]
        label = row["label"] + (" (diverged)" if row.get("diverged") else "") + ran_at(row)
        table.add_row(label, *cells, f"{(row.get('params') or 0) / 1e3:.0f}k",
                      f"{(row.get('flops') or 0) / 1e6:.1f}", f"{row['wall_s'] / 60:.1f}")  # fmt: skip
    lines = [table, f"reference: {report['reference']}"]
    lines += [f"claim: {c['claim']}: {c['verdict_text']}" for c in report.get("claims", [])] or [
        f"verdict: {report['verdict']}"
    ]
    lines.append(f"compute: {report['wall_s']:.0f} s over {len(report['rows'])} settings x {report['folds']} folds")
    return lines


PROGRESS_HEADER = ["setting", "runs stored", "mean", "sd", "per run (re-tuning: each candidate)",
                   "minus reference (paired runs)", "still to train now"]  # fmt: skip


def _progress_rows(progress: dict[str, Any]) -> list[list[str]]:
    """One row per setting of a study still in progress, in % (a single run has no spread)."""
    rows = []
    for row in progress["rows"]:
        s, values = row["summary"], row["values"]
        label = row["label"] + ran_at(row)
        todo = "re-tuning: " if row["retuning"] else ""
        if row["retuning"]:  # no rate chosen yet: each candidate's score on the re-tuning fold
            values_text = ", ".join(f"{setting_value(c['value'])}: {'-' if c['score'] is None else _pct(c['score'])}"
                                    for c in row["candidates"])  # fmt: skip
        else:
            values_text = " ".join(f"{100 * v:.2f}" for v in values) or "-"
        rows.append([
            label,
            f"{len(values)} of {row['repeats']} ({progress['repeat']} {', '.join(map(str, row['runs']))})"
            if values else f"0 of {row['repeats']}",
            f"{100 * s['mean']:.2f}" if s else "-",  # two decimals: seeds of one recipe can differ by hundredths
            f"{100 * s['std']:.2f}" if s and s["n"] > 1 else "-",
            values_text,
            _minus_reference_text(row.get("minus_reference"), progress["repeat"]),
            f"{todo}{row['to_train_now']} cells" if row["to_train_now"] else "none",
        ])  # fmt: skip
    return rows


def _minus_reference_text(minus: dict[str, Any] | None, repeat: str) -> str:
    """The mean difference from the reference over the paired runs, and each run's McNemar p when it has one."""
    if not minus:
        return "-"
    tests = "".join(f"; McNemar p {t['p']:.2g} ({repeat} {t['run']})" for t in minus.get("per_image", []))
    return f"{100 * minus['mean']:+.2f} ({minus['runs']}){tests}"


def study_progress_markdown(progress: dict[str, Any]) -> str:
    """A study whose cells are not all stored yet: what each setting has so far, in %; no comparison, no verdict.
    A setting that a claim names (other than the reference) gets the claim beside it: what its runs will test."""
    header, rows = PROGRESS_HEADER, _progress_rows(progress)
    if any(r.get("claims") for r in progress["rows"]):
        header = [*header, "claim it tests"]
        rows = [[*row, "; ".join(r.get("claims", []))] for row, r in zip(rows, progress["rows"], strict=True)]
    return markdown_table(header, rows) + (
        f'\n\n{progress["metric"]} in %, stored runs only; "minus reference" is the mean difference in points over '
        "the runs (same fold or seed) that the setting and the reference both have, with no interval"
        + (
            "; McNemar p: the two runs of one seed compared image by image on the test set (the test set's sampling "
            "error, not the spread over seeds)"
            if any((r.get("minus_reference") or {}).get("per_image") for r in progress["rows"])
            else ""
        )
        + ". The study is in progress: no test and no verdict until every cell it needs is stored."
    )


def study_progress_tables(progress: dict[str, Any]) -> list[Any]:
    """What ``lit-mc study report FILE`` prints for a study still in progress."""
    from rich.table import Table

    table = Table(title=f"{progress['name']} (in progress): {progress['hypothesis']}")
    for column in PROGRESS_HEADER:
        table.add_column(column)
    for row in _progress_rows(progress):
        table.add_row(*row)
    todo = sum(r["to_train_now"] for r in progress["rows"])
    later = " (more follow once re-tuning chooses a rate)" if progress.get("retunes") else ""
    return [table, f"{progress['metric']} in %; {todo} cells still to train now{later}; no verdict until every cell "
            "is stored"]  # fmt: skip


CLAIMS_HEADER = ["study", "claim", "effect (points)", "95% CI", "p", "p (Holm, study)", "p (Holm, all claims)",
                 "detectable", "verdict (all claims)"]  # fmt: skip


def _claims_rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    """One row per claim of reports already adjusted together (``adjust_study_set``)."""

    def num(x: float, fmt: str) -> str:  # a single-run claim has no error bar: "-", not nan
        return "-" if math.isnan(x) else format(x, fmt)

    rows = []
    for report in reports:
        for c in report.get("claims", []):
            links = c["links"]
            effects = ", ".join(f"{100 * link['mean_difference']:+.1f}" for link in links)
            cis = ", ".join("-" if math.isnan(link["ci_low"])
                            else f"[{100 * link['ci_low']:+.1f}, {100 * link['ci_high']:+.1f}]"
                            for link in links)  # fmt: skip
            mdes = ", ".join(num(100 * link["mde"], ".1f") for link in links)
            rows.append([report["name"], c["claim"], effects, cis, num(c["p_value"], ".2g"),
                         num(c["p_holm_study"], ".2g"), num(c["p_holm"], ".2g"), mdes,
                         c["verdict"]])  # fmt: skip
    return rows


def claims_summary_markdown(root: Path | None = None, study_files: Path | None = None) -> str:
    """Every claim of the studies stored at their study file's current budget, Holm-adjusted together (nothing is
    written), and the studies whose stored results are an earlier round's, still to re-run."""
    from lit_mc.studies.study import adjust_study_set

    root = root or results_root()
    study_files = study_files or root.parent / "configs" / "studies"
    names = available_studies(root)
    reports = {n: load_study(n, root) for n in names}
    current = [n for n in names if stored_at_current_budget(reports[n], study_files / f"{n}.yaml")]
    rows = _claims_rows(adjust_study_set([reports[n] for n in current if reports[n].get("claims")]))
    progress = {n: p for n in (*STUDY_ORDER, "best_model") if (p := load_study_progress(n, root)) is not None}
    stale = [n for n in names if n not in current and n not in progress]
    text = markdown_table(CLAIMS_HEADER, rows)
    if progress:
        text += "\n\nIn progress at their study file's budget (stored runs only, no verdict yet; `lit-mc study " \
                "report configs/studies/NAME.yaml`): " + ", ".join(
                    f"{n} ({sum(len(r['values']) for r in p['rows'])} of {sum(r['repeats'] for r in p['rows'])} runs "
                    "of its settings stored)" for n, p in progress.items()) + "."  # fmt: skip
    if stale:
        text += "\n\nStored only at an earlier round's budget, to be re-run: " + ", ".join(stale) + "."
    return text


def write_claims_summary(results: Path, study_files: Path | None = None) -> Path:
    """``results/claims.md``: the claims table of ``claims_summary_markdown`` (every current claim Holm-adjusted
    together). The study.json files keep their within-study verdicts: the set-wide ones are recomputed, not stored."""
    from lit_mc.io import atomic_write_text

    out = results / "claims.md"
    atomic_write_text(out, claims_summary_markdown(results.parent, study_files) + "\n")
    return out


def curve_statistics(cell: dict[str, Any]) -> tuple[int, int, float, float, int] | None:
    """Best val_acc epoch, epochs run, train and val accuracy at that epoch, val-loss minimum epoch (from 1)."""
    epochs = [e for e in cell["curves"] if e.get("val_acc") is not None]
    if not epochs or any(e.get("train_acc") is None or e.get("val_loss") is None for e in epochs):
        return None
    best = max(range(len(epochs)), key=lambda i: epochs[i]["val_acc"])
    loss_min = min(range(len(epochs)), key=lambda i: epochs[i]["val_loss"])
    return best + 1, len(epochs), epochs[best]["train_acc"], epochs[best]["val_acc"], loss_min + 1


def curve_statistics_markdown(report: dict[str, Any], cells: dict[str, dict]) -> str:
    """What the learning curves show, as numbers per setting (mean over its folds): where validation accuracy
    peaks, how far training accuracy runs ahead there (the overfitting gap), and where validation loss bottoms out."""
    rows = []
    for row in report["rows"]:
        stats = [curve_statistics(cells[key]) for key in row["cells"] if key in cells]
        stats = [s for s in stats if s is not None]
        if not stats:
            continue
        best, run, train, val, loss_min = (sum(column) / len(stats) for column in zip(*stats, strict=True))
        rows.append([row["label"], f"{best:.1f} of {run:.1f}", _pct(train), _pct(val),
                     f"{100 * (train - val):+.1f}", f"{loss_min:.1f}"])  # fmt: skip
    if not rows:
        return ""
    return markdown_table(["setting", "best epoch of run", "train acc % there", "val acc % there",
                           "gap (points)", "val-loss minimum at epoch"], rows)  # fmt: skip


def study_figures(report: dict[str, Any], cells: dict[str, dict]) -> dict[str, Figure]:
    """Learning curves, metric per setting with its CI, and (2-D grids) the heat map."""
    from lit_mc.plots import heatmap_figure, learning_curves_figure, metric_bars_figure

    grid = heatmap_figure(report)
    n, word = repeats(report)
    figures = {
        "learning_curves.png": learning_curves_figure(
            report["rows"],
            cells,
            f"{report['name']}: learning curves, " + (f"mean over {n} {word}" if n > 1 else "one run per setting"),
        ),
        # past eight settings a grid reads better as its heat map alone
        "metric.png": metric_bars_figure(report) if grid is None or len(report["rows"]) <= 8 else None,
        "heatmap.png": grid,
    }
    return {name: fig for name, fig in figures.items() if fig is not None}


def compute_table(
    reports: Sequence[dict[str, Any]], root: Path | None = None, budgets: Sequence[str] | None = None
) -> str:
    """Compute spent per study (wall time of its cells on this machine); the total counts a cell that several
    studies share once. ``budgets`` names each report's budget (e.g. an earlier round's, or a study in progress,
    whose ``study_progress.json`` counts the runs stored so far) in a column of its own."""
    rows, summed = [], 0.0
    for i, r in enumerate(reports):
        runs = len(r["seeds"]) if r.get("seeds") else r.get("folds") or max(row["repeats"] for row in r["rows"])
        minutes = r.get("wall_s", sum(row["wall_s"] for row in r["rows"])) / 60
        summed += minutes
        rows.append([r["name"], *([budgets[i]] if budgets else []), len(r["rows"]), runs, f"{minutes:.1f}"])
    cells: dict[str, dict] = {}
    for r in reports:
        cells.update(study_cells(r, root))
    total = sum(cell.get("wall_s", 0.0) for cell in cells.values()) / 60
    head = ["study", *(["budget"] if budgets else []), "settings", "folds or seeds", "minutes"]
    return markdown_table(head, rows) + (
        f"\n\nTotal: {total:.0f} minutes of training, each of the {len(cells)} cells counted once "
        f"(the studies' own minutes add up to {summed:.0f}, shared cells counted in each)."
    )


def stored_at_current_budget(report: dict[str, Any], study_file: Path) -> bool:
    """Whether a stored study report was made at the budget its study file states now (else it is an earlier
    round's result, to be re-run)."""
    from lit_mc.studies import Study

    if not study_file.is_file():
        return True  # a study without a shipped file (a user's own): nothing to compare with
    return Study.load(study_file).budget == report["budget"] and Study.load(study_file).folds == report["folds"]


# -- single runs ----------------------------------------------------------------------------------------------
def run_curves_figure(metrics_csv: Path, label: str) -> Figure:
    """Learning curves of one run from its CSV log."""
    from lit_mc.plots import learning_curves_figure
    from lit_mc.studies.cv import read_curves

    curves = {"run": {"curves": read_curves(metrics_csv)}}
    return learning_curves_figure([{"label": "this run", "cells": ["run"]}], curves, label)


def test_report_markdown(test_metrics: dict[str, Any]) -> str:
    """Test accuracy, macro-F1 and per-class accuracy of a classification run (its ``test_metrics.json``), each
    accuracy with its binomial standard error over the test images it counts (the sampling error of one run; what
    another seed would change is not in it)."""
    m = test_metrics["metrics"]
    confusion = test_metrics["confusion"]  # rows: true class, so a row's sum is that class's test images

    def se(p: float, n: int) -> str:
        return f"{100 * math.sqrt(p * (1 - p) / n):.1f}"

    n_all = sum(map(sum, confusion))
    per_class = [[name, _pct(m[f"test_acc_{name}"]), se(m[f"test_acc_{name}"], sum(confusion[i]))]
                 for i, name in enumerate(test_metrics["class_names"])]  # fmt: skip
    head = (
        f"Test accuracy **{_pct(m['test_acc'])}%** (binomial standard error {se(m['test_acc'], n_all)} points on "
        f"{n_all:,} images), macro-F1 {m['test_f1']:.4f}, test loss {m['test_loss']:.4f}"
    )
    head += f", expected calibration error {m['test_ece']:.4f}." if "test_ece" in m else "."
    return head + "\n\n" + markdown_table(["class", "test accuracy %", "binomial se (points)"], per_class)


def confusion_figure(test_metrics: dict[str, Any], title: str | None = None) -> Figure:
    import torch

    from lit_mc.plots import confusion_matrix_figure

    return confusion_matrix_figure(torch.tensor(test_metrics["confusion"]), test_metrics["class_names"], title)


def cv_markdown(summary: dict[str, Any]) -> str:
    rows = []
    for metric, s in summary["summary"].items():
        per_fold = " ".join(f"{fold[metric]:.4f}" for fold in summary["per_fold"])
        rows.append(
            [metric, f"{s['mean']:.4f}", f"{s['std']:.4f}", f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]", per_fold]
        )
    return markdown_table(["metric", "mean", "std", "95% t-interval (uncorrected: the folds share training data)",
                           "per fold"], rows)  # fmt: skip


def overfit_markdown(results: list[dict[str, Any]]) -> str:
    """One row per model of the overfit-one-batch benchmark, with its verdict: it passes when it classifies every
    image of the batch right within its step budget (the loss mark is the stricter reading of how far it got)."""
    rows = [[r["config"], r["first_loss"] and f"{r['first_loss']:.3f}", f"{r['final_loss']:.4g}",
             r["step_acc_100"] or f"not within {r['steps']}", r["step_loss_below_0.05"] or f"not within {r['steps']}",
             "passes" if r["final_acc"] == 1.0 else "fails: check for a bug"] for r in results]  # fmt: skip
    return markdown_table(
        ["config", "first loss", "final loss", "100% batch accuracy at step", "loss < 0.05 at step", "verdict"], rows
    )


def overfit_figure(results: list[dict[str, Any]]) -> Figure | None:
    """The overfit benchmark's loss and accuracy per step; None for results stored before curves were kept."""
    from lit_mc.plots import overfit_figure as draw

    with_curves = [r for r in results if r.get("curve")]
    return draw(with_curves) if with_curves else None


def studies_summary_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """One line per study: command, budget, compute and the verdict line (the README's results table)."""
    rows = []
    for r in reports:
        budget = " ".join(b.removeprefix("--") for b in r["budget"] if "progress_bar" not in b)
        command = f"`lit-mc study run configs/studies/{r['name']}.yaml`"
        rows.append([r["name"], command, f"{len(r['rows'])} x {r['folds']} folds, {budget}",
                     f"{r['wall_s'] / 60:.1f}", r["verdict"]])  # fmt: skip
    return markdown_table(["study", "command", "settings, budget", "cell minutes", "verdict"], rows)


def write_study_figures(report: dict[str, Any], store: ResultsStore, suffix: str = "") -> list[Path]:
    """Learning curves, metric per setting and (for 2-D grids) the heat map, as PNGs beside ``study.json``;
    ``suffix`` keeps another budget's figures apart (``metric_second_budget.png``)."""
    cells = {key: store.read(key) for row in report["rows"] for key in row["cells"]}
    written = []
    for name, fig in study_figures(report, cells).items():
        path = store.root / f"{Path(name).stem}{suffix}.png"
        atomic_save_figure(fig, path)
        written.append(path)
    return written


def confusion_pairs_markdown(test_metrics: dict[str, Any], top: int = 5) -> str:
    """The most frequent confusions (true class -> predicted class), as counts and shares of the true class."""
    names, confusion = test_metrics["class_names"], test_metrics["confusion"]
    pairs = [(confusion[i][j], i, j) for i in range(len(names)) for j in range(len(names)) if i != j]
    rows = []
    for count, i, j in sorted(pairs, reverse=True)[:top]:
        share = count / max(1, sum(confusion[i]))
        rows.append([f"{names[i]} -> {names[j]}", count, f"{100 * share:.1f}%"])
    return markdown_table(["true -> predicted", "test images", "share of the true class"], rows)


def per_class_markdown(runs: dict[str, dict[str, Any] | list[dict[str, Any]]]) -> str:
    """Per-class test accuracy of several runs side by side (``name -> test_metrics.json``, or a list of them: the
    seeds of one recipe, shown as mean and sd), in %, with the last run's gain over the first (means): where a
    better model's gain comes from, and whether it is larger than a seed moves it."""
    import statistics

    names = list(runs)
    seeds = {n: r if isinstance(r, list) else [r] for n, r in runs.items()}
    classes = seeds[names[0]][0]["class_names"]
    rows = []
    for c in [*classes, None]:
        key = "test_acc" if c is None else f"test_acc_{c}"
        values = {n: [m["metrics"][key] for m in seeds[n]] for n in names}
        means = [statistics.fmean(values[n]) for n in names]
        shown = [_pct(m) + (f" ± {100 * statistics.stdev(values[n]):.2f}" if len(values[n]) > 1 else "")
                 for n, m in zip(names, means, strict=True)]  # fmt: skip
        rows.append([c or "**all**", *shown, f"{100 * (means[-1] - means[0]):+.1f}"])
    head = [f"{n} %" + (f" (mean ± sd of {len(seeds[n])} seeds)" if len(seeds[n]) > 1 else "") for n in names]
    return markdown_table(["class", *head, f"{names[-1]} minus {names[0]} (points)"], rows)


def read_predictions(path: Path) -> tuple[list[int], list[float]]:
    """Predicted class and its probability (the confidence) per test image, from a ``predictions.csv``."""
    import csv

    with path.open() as f:
        rows = list(csv.DictReader(f))
    return [int(r["pred"]) for r in rows], [float(r["confidence"]) for r in rows]


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> list[dict[str, float]]:
    """Equal-width confidence bins over [0, 1] (torchmetrics' binning: a confidence on an edge goes to the bin
    below it): count, mean confidence and accuracy of each. Their count-weighted mean |accuracy - confidence| is
    the expected calibration error."""
    import torch

    conf = torch.tensor(list(confidence), dtype=torch.float64)
    hit = torch.tensor(list(correct), dtype=torch.float64)
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = (torch.bucketize(conf, edges) - 1).clamp(0, bins - 1)
    out = []
    for b in range(bins):
        member = index == b
        n = int(member.sum())
        out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": n,
                    "confidence": float(conf[member].mean()) if n else math.nan,
                    "accuracy": float(hit[member].mean()) if n else math.nan})  # fmt: skip
    return out


def expected_calibration_error(bins: list[dict[str, float]]) -> float:
    total = sum(b["count"] for b in bins)
    return sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / total


def reliability_figure(confidence: Sequence[float], correct: Sequence[bool], title: str) -> Figure:
    from lit_mc.plots import reliability_figure as draw

    bins = reliability_bins(confidence, correct)
    return draw(bins, f"{title} (ECE {expected_calibration_error(bins):.4f}, 15 bins)")


def confident_mistakes(
    predictions: Sequence[int], confidence: Sequence[float], labels: Sequence[int], top: int = 24
) -> list[int]:
    """Indices of the ``top`` wrong predictions made with the highest confidence."""
    wrong = [i for i, (p, y) in enumerate(zip(predictions, labels, strict=True)) if p != y]
    return sorted(wrong, key=lambda i: -confidence[i])[:top]


def confident_mistakes_figure(
    images: Any, labels: Sequence[int], predictions: Sequence[int], confidence: Sequence[float],
    class_names: Sequence[str], title: str, top: int = 24,
) -> Figure:  # fmt: skip
    """The model's most confident mistakes on the test images, each captioned 'true -> predicted confidence'."""
    from lit_mc.plots import mistakes_figure

    picks = confident_mistakes(predictions, confidence, labels, top)
    captions = [f"{class_names[labels[i]]} -> {class_names[predictions[i]]}\n{confidence[i]:.2f}" for i in picks]
    return mistakes_figure(images[picks], captions, title)


# -- weight initialisation ------------------------------------------------------------------------------------
def init_signal_markdown(bench: Path | None = None) -> str:
    """``benchmarks/init_signal.py``'s measurement as a table: one row per scheme, one column per layer (the
    standard deviation of the layer's output at initialisation, on real training images)."""
    signal = read_json((bench or bench_root()) / "init_signal.json")["inits"]
    layers = [layer["layer"] for layer in next(iter(signal.values()))]
    rows = [[init, *(f"{layer['std']:.3g}" for layer in stds)] for init, stds in signal.items()]
    return markdown_table(["init", *layers], rows)
