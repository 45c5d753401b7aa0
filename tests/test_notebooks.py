"""The report notebooks run top to bottom on small fixture results (no real data, no checkpoints): they never rot."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from cider_reference import cider_d
from conftest import QUIET, REPO, baseline_fit
from lit_mc.captioning.vocab import clean_caption
from lit_mc.cli import main
from lit_mc.report import check_facts, typed_numbers

NOTEBOOKS = REPO / "notebooks"
SOURCES = ("01_cifar10_study", "02_flickr8k_captioning")  # notebooks/<name>.py (jupytext), paired with <name>.ipynb


@pytest.fixture(scope="module")
def fixture_results(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results tree in the shipped layout: a baseline run, its CV, and one study; made by the real commands."""
    work = tmp_path_factory.mktemp("work")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        main([*baseline_fit(cifar_root, "--trainer.max_epochs=2", "--trainer.callbacks=[]")])
        run = next((work / "lightning_logs").glob("version_*"))
        (work / "results" / "cifar10").mkdir(parents=True)
        shutil.copytree(run, work / "results" / "cifar10" / "baseline")
        best = work / "results" / "cifar10" / "best_model" / "seed0"  # the same run stands in for a best-model seed
        shutil.copytree(run, best)
        writer = '--trainer.callbacks=[{"class_path": "lit_mc.classification.PredictionWriter"}]'
        main(["predict", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), writer, f"--data.data_dir={cifar_root}",
              *QUIET])  # fmt: skip
        shutil.copy(next((work / "lightning_logs").glob("version_*/predictions.csv")), best / "predictions.csv")
        budget = [f"--data.data_dir={cifar_root}", "--data.val_size=50", "--trainer.max_epochs=1", *QUIET]
        main(["cv", "--config", str(REPO / "configs" / "cifar10" / "baseline.yaml"), "--folds", "2", *budget])
        study = yaml.safe_load((REPO / "configs" / "studies" / "learning_rate.yaml").read_text())
        study.update(budget=budget, base=str(REPO / study["base"]), folds=2, grid={"model.init_args.lr": [0.01, 0.04]})
        study["claims"] = [{"claim": "a larger rate helps", "setting": {"model.init_args.lr": 0.04}}]
        (work / "studies").mkdir()
        (work / "studies" / "learning_rate.yaml").write_text(yaml.safe_dump(study))
        main(["study", "run", str(work / "studies" / "learning_rate.yaml")])
    finally:
        os.chdir(cwd)
    return work / "results"


def _execute(source: str, results: Path, path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list, str]:
    """Run a notebook's jupytext source on ``results``; fail on any error output; return its outputs and markdown."""
    from nbclient import NotebookClient

    monkeypatch.setenv("LIT_MC_RESULTS", str(results))
    monkeypatch.setenv("LIT_MC_BENCH", str(REPO / "benchmarks" / "results"))
    monkeypatch.setenv("LIT_MC_REPO", str(REPO))
    nb = jupytext.read(NOTEBOOKS / f"{source}.py")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": os.getcwd()}}).execute()
    nbformat.write(nb, path)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert not errors, errors
    return outputs, "\n".join(o.get("data", {}).get("text/markdown", "") for o in outputs)


def test_cifar_notebook_runs_on_fixture_results(fixture_results: Path, cifar_root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LIT_MC_DATA", str(cifar_root))
    monkeypatch.setenv("LIT_MC_STUDIES", str(fixture_results.parent / "studies"))  # the fixture study's own file
    monkeypatch.setenv("LIT_MC_FACTS", str(tmp_path / "facts.json"))
    outputs, text = _execute("01_cifar10_study", fixture_results, tmp_path / "01.ipynb", monkeypatch)
    assert "Verdicts, claim by claim" in text and "a larger rate helps" in text and "lr=0.04" in text
    assert "Test accuracy" in text and "Reflection (learning_rate)" in text
    assert "The claims read (learning_rate)" in text and "Holm-adjusted p" in text  # the fixture's claim, 2 folds
    assert "What the curves show, in numbers" in text
    assert "best model minus baseline" in text and "Calibration, read from the diagram" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 7  # + confusion, calibration, mistakes
    _assert_numbers_come_from_results(tmp_path / "facts.json", text, "01_cifar10_study", least=10)


def _assert_numbers_come_from_results(facts_file: Path, text: str, source: str, least: int) -> None:
    """No number of the prose drifts from its results: each one read again from its source, each one in the text,
    and none typed by hand into a markdown cell."""
    assert check_facts(facts_file) == []
    facts = json.loads(facts_file.read_text())["facts"]
    assert len(facts) >= least and all(f["text"] in text for f in facts if f["quoted"])  # inputs the text omits
    typed = {i: typed_numbers(c.source) for i, c in enumerate(jupytext.read(NOTEBOOKS / f"{source}.py").cells)
             if c.cell_type == "markdown"}  # fmt: skip
    assert not any(typed.values()), typed


def test_cifar_slides_run_on_fixture_results(fixture_results: Path, cifar_root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LIT_MC_DATA", str(cifar_root))
    monkeypatch.setenv("LIT_MC_STUDIES", str(fixture_results.parent / "studies"))
    monkeypatch.setenv("LIT_MC_FACTS", str(tmp_path / "facts.json"))
    outputs, text = _execute("slides_01_cifar10", fixture_results, tmp_path / "slides.ipynb", monkeypatch)
    assert "a larger rate helps" in text and "Test accuracy" in text and "learning_rate" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # baseline curves, the study's figure
    _assert_numbers_come_from_results(tmp_path / "facts.json", text, "slides_01_cifar10", least=3)


def _deck_builder():  # noqa: ANN202
    import sys

    sys.path.insert(0, str(NOTEBOOKS))
    import build_slides

    return build_slides


def _fake_reveal(root: Path) -> Path:
    """A stand-in for the unpacked reveal.js package: the same files, markers for contents."""
    (root / "dist" / "theme").mkdir(parents=True)
    (root / "dist" / "reveal.js").write_text("window.Reveal = {initialize() {}}; /*REVEAL_JS*/")
    (root / "dist" / "reveal.css").write_text("/*REVEAL_CSS*/")
    (root / "dist" / "theme" / "white.css").write_text("@import url(./fonts/source-sans-pro.css); /*THEME*/")
    return root


def _two_slides() -> nbformat.NotebookNode:
    new = nbformat.v4
    slide = {"slideshow": {"slide_type": "slide"}}
    output = new.new_output("display_data", data={"text/markdown": "shown **output**"})
    return new.new_notebook(cells=[
        new.new_markdown_cell("# The title", metadata=slide),
        new.new_code_cell("secret_input = 1", outputs=[output]),
        new.new_markdown_cell("## The second slide", metadata=slide),
    ])  # fmt: skip


def test_a_deck_is_one_offline_page_with_its_slides_and_no_code(tmp_path: Path) -> None:
    import re

    build_slides = _deck_builder()
    nb = _two_slides()
    html = build_slides.export(nb, build_slides.reveal_assets(_fake_reveal(tmp_path / "reveal")))
    assert build_slides.slide_count(nb) == 2 and build_slides.title(nb) == "The title"
    assert "The second slide" in html and "shown" in html and "secret_input" not in html  # outputs, not code
    assert all(marker in html for marker in ("/*REVEAL_JS*/", "/*REVEAL_CSS*/", "/*THEME*/"))  # inlined
    assert "@import" not in html and re.findall(r"(?:src|href)=\"(?:https?:)?//", html) == []  # nothing fetched
    with pytest.raises(SystemExit, match="npm pack reveal.js"):
        build_slides.reveal_assets(tmp_path / "nowhere")


@pytest.mark.skipif(not any(map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))),
                    reason="no Chromium here (apt-get install chromium)")  # fmt: skip
def test_every_slide_of_a_deck_is_screenshot(tmp_path: Path) -> None:
    """Real reveal.js is not at hand in a test, so a two-section page stands in; each shot is 1280x720."""
    from PIL import Image

    build_slides = _deck_builder()
    page = tmp_path / "deck.html"
    page.write_text("<html><body style='margin:0'><section style='height:720px;background:#fff'>one</section>"
                    "<section style='height:720px;background:#000'>two</section></body></html>")  # fmt: skip
    browser = next(filter(None, map(shutil.which, build_slides.BROWSERS)))
    shots = build_slides.screenshots(page, 2, tmp_path / "shots", browser)
    assert [p.name for p in shots] == ["slide_01.png", "slide_02.png"]
    assert all(Image.open(p).size == (1280, 720) for p in shots)


def _prefix_lm_result(toy: Path, out: Path) -> None:
    """A prefix LM on a tiny random Llama, trained a step on the toy set and analysed as the campaign does (decoding
    chosen on validation, the test split decoded once with it)."""
    from lit_mc.cli import run_lightning_cli
    from lit_mc.report.caption_runs import analyse_run, best_checkpoint, choose_decoding, test_with_decoding

    args = [
        "fit", "--config", str(REPO / "configs" / "flickr8k" / "prefix_lm.yaml"), f"--data.data_dir={toy}",
        "--data.encoder.backbone=patches", "--data.encoder.weights=null", "--data.encoder.image_size=32",
        "--data.batch_size=20", "--data.eval_batch_size=8", "--trainer.max_epochs=1", "--test_after_fit=false",
        "--model.init_args.lm=tiny-random", "--model.init_args.mapper_width=16", "--model.init_args.warmup_steps=0",
        "--trainer.logger.init_args.name=flickr8k_prefix_lm", *QUIET,
    ]  # fmt: skip
    run = Path(run_lightning_cli(args).trainer.log_dir)
    chosen = choose_decoding(best_checkpoint(run), toy, beams=(1, 2), penalties=(0.0,))
    out.mkdir(parents=True)
    (out / "decoding.json").write_text(json.dumps(chosen))
    test_with_decoding(best_checkpoint(run), toy, chosen["best"]["beam_size"], 0.0, out)
    analyse_run(run, toy, out, examples=1, beam=chosen["best"]["beam_size"], tested_here=True)


def test_captioning_notebook_runs_on_fixture_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A toy ShowAttendTell run, analysed into the results layout, then the notebook on top of it."""
    from lit_mc.captioning.toy import write_toy_set
    from lit_mc.cli import run_lightning_cli
    from lit_mc.report.caption_runs import analyse_run

    toy = write_toy_set(tmp_path / "toy", train=40, val=8, test=8, size=32)
    monkeypatch.chdir(tmp_path)
    args = [
        "fit", "--config", str(REPO / "configs" / "flickr8k" / "show_attend_tell.yaml"), f"--data.data_dir={toy}",
        "--data.encoder.backbone=patches", "--data.encoder.weights=null", "--data.encoder.image_size=32",
        "--data.min_count=1", "--data.batch_size=20", "--data.eval_batch_size=8", "--trainer.max_epochs=1",
        "--trainer.logger.init_args.name=flickr8k_show_attend_tell", *QUIET,
    ]  # fmt: skip
    cli = run_lightning_cli(args)
    results = tmp_path / "results"
    summary = analyse_run(Path(cli.trainer.log_dir), toy, results / "flickr8k" / "show_attend_tell", examples=2)
    # every test caption's CIDEr-D recomputed independently (tests/cider_reference.py), from the run's captions and
    # the caption file: the stored examples are the two best and two worst, with their captions, references, scores
    with (Path(cli.trainer.log_dir) / "captions.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["beam_size"] == "1"]
    generated = {cli.datamodule.names[int(r["row"])]: r["caption"] for r in rows}
    references: dict[str, list[str]] = {}
    for line in (toy / "Flickr8k_text" / "Flickr8k.token.txt").read_text().splitlines():
        image, caption = line.split("\t")
        references.setdefault(image.split("#")[0], []).append(" ".join(clean_caption(caption)))
    images = sorted(generated)
    cider = dict(zip(images, cider_d([generated[i] for i in images], [references[i] for i in images]), strict=True))
    ranked = sorted(cider.values(), reverse=True)
    assert len(images) == 8 and ranked[1] > ranked[-2]  # the best two score above the worst two
    assert summary["mean_cider"] == pytest.approx(sum(ranked) / 8, rel=1e-9)
    assert [e["cider"] for e in summary["best"]] == pytest.approx(ranked[:2], rel=1e-9)  # highest first
    assert [e["cider"] for e in summary["worst"]] == pytest.approx(ranked[::-1][:2], rel=1e-9)  # lowest first
    for example in summary["best"] + summary["worst"]:
        image = example["image"]
        assert example["cider"] == pytest.approx(cider[image], rel=1e-9)
        assert example["caption"] == generated[image] and example["references"] == references[image]
    assert len(summary["best_figures"]) == 2  # one attention overlay per example
    reading = summary["attention_entropy"]  # every greedy word of the 8 test images, by class
    assert reading["images"] == 8 and sum(c["words"] for c in reading["by_word_class"].values()) > 0
    assert all(0 <= c["mean_entropy"] <= 1 for c in reading["by_word_class"].values())
    _prefix_lm_result(toy, results / "flickr8k" / "prefix_lm")
    monkeypatch.setenv("LIT_MC_FLICKR8K", str(toy))
    monkeypatch.setenv("LIT_MC_FACTS", str(tmp_path / "facts.json"))
    outputs, text = _execute("02_flickr8k_captioning", results, tmp_path / "02.ipynb", monkeypatch)
    _assert_numbers_come_from_results(tmp_path / "facts.json", text, "02_flickr8k_captioning", least=3)
    assert "show_attend_tell" in text and "Xu et al. 2015" in text and "CIDEr" in text
    assert "The prefix LM minus each captioner trained from scratch" in text and "Reading.** The prefix LM" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3
    monkeypatch.setenv("LIT_MC_FACTS", str(tmp_path / "facts.json"))  # the slides on the same results
    outputs, text = _execute("slides_02_flickr8k", results, tmp_path / "slides.ipynb", monkeypatch)
    assert (
        "show_attend_tell" in text and "CIDEr" in text and sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    )
    _assert_numbers_come_from_results(tmp_path / "facts.json", text, "slides_02_flickr8k", least=0)


@pytest.mark.parametrize("name", SOURCES)
def test_committed_notebook_matches_its_source(name: str) -> None:
    """The .ipynb (with its outputs) is what its jupytext source says: edit either, then `make notebooks`."""
    source = jupytext.read(NOTEBOOKS / f"{name}.py")
    committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in source.cells]
    assert committed.metadata["jupytext"]["formats"] == "ipynb,py:percent"  # paired: Jupyter saves both files


def test_a_number_that_drifted_from_its_source_is_caught(tmp_path: Path) -> None:
    """A sentence quotes a stored accuracy and a difference; the source changes afterwards: both are reported."""
    from lit_mc.report import Facts

    (tmp_path / "run.json").write_text(json.dumps({"rows": [{"label": "a", "acc": 0.7512}, {"label": "b", "acc": 0.7}],
                                                   "curve": [{"v": 0.3}, {"v": 0.9}, {"v": 0.5}]}))  # fmt: skip
    facts = Facts(tmp_path)
    a, b = (facts.get("run.json", "rows", {"label": label}, "acc") for label in "ab")
    gain = facts.derive("difference", a, b, fmt="points")
    peak = facts.get("run.json", "curve", field="v", reduce="argmax_epoch", fmt="int")
    assert f"{a} vs {b}: {gain}, best epoch {peak}" == "75.1% vs 70.0%: +5.1 points, best epoch 2"
    facts.save(tmp_path / "facts.json")
    assert check_facts(tmp_path / "facts.json") == []
    (tmp_path / "run.json").write_text(json.dumps({"rows": [{"label": "a", "acc": 0.74}, {"label": "b", "acc": 0.7}],
                                                   "curve": [{"v": 0.3}, {"v": 0.9}, {"v": 0.5}]}))  # fmt: skip
    wrong = check_facts(tmp_path / "facts.json")
    assert len(wrong) == 2 and "75.1%" in wrong[0] and "74.0%" in wrong[0] and "+4.0 points" in wrong[1]


def test_a_mean_over_unquoted_seeds_and_a_margin_to_a_stated_target_are_read_again(tmp_path: Path) -> None:
    from lit_mc.report import Facts

    for seed, cider in enumerate((0.50, 0.56, 0.53)):
        (tmp_path / f"seed{seed}.json").write_text(json.dumps({"cider": cider}))
    facts = Facts(tmp_path)
    seeds = [facts.get(f"seed{s}.json", "cider", fmt="score", quoted=False) for s in range(3)]
    mean, sd = facts.derive("mean", *seeds, fmt="score"), facts.derive("sd", *seeds, fmt="score")
    margin = facts.derive("difference", mean, 0.60, fmt="score_diff")
    assert (mean, sd, margin) == ("53.0", "3.0", "-7.0") and not seeds[0].quoted and mean.quoted
    facts.save(tmp_path / "facts.json")
    assert check_facts(tmp_path / "facts.json") == []
    (tmp_path / "seed1.json").write_text(json.dumps({"cider": 0.59}))  # one seed re-analysed afterwards
    wrong = check_facts(tmp_path / "facts.json")
    assert len(wrong) == 4 and "56.0" in wrong[0] and "-6.0" in wrong[-1]  # the seed, mean, sd and the margin


def test_curve_statistics_read_the_best_epoch_the_gap_and_the_loss_minimum() -> None:
    from lit_mc.report import curve_statistics_markdown

    def epoch(i: int, train: float, val: float, loss: float) -> dict:
        return {"epoch": i, "train_acc": train, "val_acc": val, "val_loss": loss}

    cells = {"a": {"curves": [epoch(0, 0.5, 0.4, 1.0), epoch(1, 0.8, 0.6, 0.8), epoch(2, 0.9, 0.5, 0.9)]},
             "b": {"curves": [epoch(0, 0.6, 0.5, 1.0), epoch(1, 0.7, 0.55, 1.1), epoch(2, 0.8, 0.7, 1.2)]}}  # fmt: skip
    table = curve_statistics_markdown({"rows": [{"label": "x", "cells": ["a", "b"]}]}, cells)
    # best epochs 2 and 3 of 3; train 0.8 / 0.8 and val 0.6 / 0.7 there: gap 15 points; loss minima at 2 and 1
    assert table.splitlines()[-1] == "| x | 2.5 of 3.0 | 80.0 | 65.0 | +15.0 | 1.5 |"


def test_an_inconclusive_claim_is_read_link_by_link(tmp_path: Path) -> None:
    """A two-link claim with one link below the detectable effect was read as "reaches the detectable size"."""
    from lit_mc.report import Facts, claims_reflection

    def link(label: str, diff: float, mde: float) -> dict:
        return {"label": label, "against": "base", "mean_difference": diff, "df": 4, "ci_low": diff - 0.03,
                "ci_high": diff + 0.03, "mde": mde}  # fmt: skip

    def study(*links: dict) -> dict:
        return {"claims": [{"claim": "c", "verdict": "inconclusive", "direction": "greater", "links": list(links),
                            "p_holm": 0.2, "family_size": 2}]}  # fmt: skip

    (tmp_path / "studies" / "s").mkdir(parents=True)
    readings = {}
    for case, links in {"mixed": (link("a", 0.01, 0.03), link("b", 0.04, 0.03)),
                        "small": (link("a", 0.01, 0.03), link("b", 0.02, 0.03)),
                        "large": (link("a", 0.04, 0.03),),
                        "per fold": ({**link("a", 0.04, 0.03), "differences": [0.05, -0.01, 0.06, 0.02, 0.08]},),
                        }.items():  # fmt: skip
        (tmp_path / "studies" / "s" / "study.json").write_text(json.dumps(study(*links)))
        readings[case] = claims_reflection(Facts(tmp_path), "s")
    assert "higher in 4 of its 5 folds)" in readings["per fold"] and "higher in" not in readings["large"]
    assert "a stays below the detectable effect while the other links reach it" in readings["mixed"]
    assert "null result of low power" in readings["small"] and "stays below" not in readings["small"]
    assert "reaches the detectable size" in readings["large"]
    supported = study({**link("a", 0.04, 0.03), "differences": [0.05, 0.03, 0.04]})
    supported["claims"][0]["verdict"] = "supported"
    for repeats, extra in (("seeds", {"seeds": [0, 1, 2]}), ("folds", {})):  # a seed study's runs are not folds
        (tmp_path / "studies" / "s" / "study.json").write_text(json.dumps({**supported, **extra}))
        reading = claims_reflection(Facts(tmp_path), "s")
        assert f"higher in 3 of its 3 {repeats})" in reading and f"the {repeats} agree beyond" in reading


def test_a_setting_that_never_learned_is_flagged_and_earlier_verdicts_can_be_hidden() -> None:
    """A weight-init setting sat at 10% in every fold, finite loss, no divergence flag: the table now says so."""
    from lit_mc.report import study_markdown

    def row(label: str, values: list[float]) -> dict:
        mean = sum(values) / len(values)
        summary = {"n": len(values), "mean": mean, "std": 0.01, "ci_low": mean - 0.02, "ci_high": mean + 0.02}
        return {"label": label, "values": values, "summary": summary, "wall_s": 60}

    rep = {"hypothesis": "h", "reference": "r", "folds": 3, "budget": [], "metric": "val_acc",
           "rows": [row("init=default", [0.5, 0.52, 0.49]), row("init=normal", [0.10, 0.5, 0.099])],
           "claims": [{"claim": "c", "verdict_text": "supported (p 0.01)"}]}  # fmt: skip
    text = study_markdown(rep)
    assert "| init=normal (at chance in 2 of 3 runs) |" in text and "init=default (" not in text
    assert "supported (p 0.01)" in text and "supported" not in study_markdown(rep, verdicts=False)


def test_a_setting_re_tuned_to_another_rate_says_the_rate_it_ran_at() -> None:
    """The optimizer study's Adam row is labelled by its grid's base rate (lr=0.001) but ran at 0.0005."""
    from lit_mc.report import study_markdown

    summary = {"n": 2, "mean": 0.7, "std": 0.01, "ci_low": 0.68, "ci_high": 0.72}
    adam = {
        "label": "optimizer=adam, lr=0.001",
        "values": [0.7, 0.7],
        "summary": summary,
        "wall_s": 60,
        "setting": {"optimizer": "adam", "lr": 0.001},
        "run_setting": {"optimizer": "adam", "lr": 0.0005},
    }
    rep = {"hypothesis": "h", "reference": "r", "folds": 2, "budget": [], "metric": "val_acc", "rows": [adam]}
    assert "| optimizer=adam, lr=0.001 (ran at lr=0.0005) |" in study_markdown(rep, verdicts=False)


def test_a_retuned_rate_at_the_edge_of_its_grid_or_within_noise_is_flagged() -> None:
    from lit_mc.report.classification import retune_markdown

    def row(label: str, scores: list[float]) -> dict:
        values = [0.02, 0.04, 0.08]
        tune = {"fold": 0, "values": values, "scores": scores, "chosen": values[scores.index(max(scores))]}
        return {"label": label, "val_images": 5000, "retune": tune}

    rows = [row("plain", [0.689, 0.679, 0.697]), row("bn", [0.72, 0.76, 0.73]), row("he", [0.659, 0.661, 0.10])]
    plain, bn, he = retune_markdown({"rows": rows}).splitlines()[1:]
    assert plain.startswith("- plain: 0.02: 68.9, 0.04: 67.9, 0.08: 69.7 (fold 0) -> 0.08 (the largest candidate")
    assert "the runner-up 0.02 is 0.80 points behind" in plain and "not resolved" in plain
    assert bn == "- bn: 0.02: 72.0, 0.04: 76.0, 0.08: 73.0 (fold 0) -> 0.04"  # inside the grid, 3 points ahead
    assert "the runner-up 0.02 is 0.20 points behind" in he  # the diverged 0.08 does not hide the tie
    assert retune_markdown({"rows": [{"label": "x"}]}) == ""
    assert retune_markdown({"rows": [{"label": "x"}]}) == ""


def test_differences_of_single_runs_and_the_best_of_many_have_their_own_errors() -> None:
    from lit_mc.report.facts import RULES

    assert abs(RULES["of_a_difference"](0.012) - 0.012 * 2**0.5) < 1e-12
    assert RULES["expected_max_excess"](1, 0.01) == pytest.approx(0.0, abs=1e-9)
    assert RULES["expected_max_excess"](2, 1.0) == pytest.approx(1 / 3.141592653589793**0.5, rel=1e-6)
    assert RULES["expected_max_excess"](20, 1.0) == pytest.approx(1.8675, abs=1e-3)  # tabulated, e.g. Tippett 1925


def test_budget_transfer_table_reads_both_budgets(tmp_path: Path) -> None:
    from lit_mc.report import budget_transfer_markdown

    folder = tmp_path / "studies" / "pooling"
    folder.mkdir(parents=True)
    assert budget_transfer_markdown("pooling", tmp_path) == ""  # the second budget has not run
    transfer = [{"claim": "avg is worse", "verdict": "supported", "effects": [-0.048], "verdict_second_budget":
                 "inconclusive", "effects_second_budget": [-0.021], "same_sign": True, "agree": False}]  # fmt: skip
    second = {"budget": ["--data.subset=0.1", "--trainer.enable_progress_bar=false"], "folds": 3,
              "budget_transfer": transfer}  # fmt: skip
    (folder / "study_second_budget.json").write_text(json.dumps(second))
    table = budget_transfer_markdown("pooling", tmp_path)
    assert "`--data.subset=0.1`, 3 folds" in table
    assert table.splitlines()[-1] == "| avg is worse | supported | -4.8 | inconclusive | -2.1 | no |"


def test_typed_numbers_are_found_outside_code_names_and_years() -> None:
    assert typed_numbers("Accuracy rose to 75.5% after 20 epochs at lr 0.04.") == ["75.5%", "20", "0.04"]
    allowed = "## 3. CIFAR-10 with `--folds 5`, 3x3 kernels, uint8 and F1 (Smith & Le 2018), studies 4-12"
    assert typed_numbers(allowed) == []


def test_readme_result_tables_are_rendered_from_the_committed_results() -> None:
    """The README's rendered blocks (`python -m lit_mc.report.readme`) say what `results/` holds now."""
    from lit_mc.report.readme import render

    _, changed = render((REPO / "README.md").read_text(), REPO / "results")
    assert changed == [], f"README blocks {changed} are out of date: run python -m lit_mc.report.readme"


def test_a_readme_block_that_drifted_is_rendered_again(tmp_path: Path) -> None:
    from lit_mc.report.readme import render

    flickr = tmp_path / "flickr8k" / "recipe"
    flickr.mkdir(parents=True)
    curve = [{"epoch": 7, "val_cider": 0.39, "val_loss": 2.5}, {"epoch": 8, "val_cider": 0.38, "val_loss": 2.6}]
    row = {"tag": "r0", "overrides": {}, "epochs": 8, "best_val_cider": 0.39, "best_epoch": 7, "curve": curve}
    (flickr / "r0.json").write_text(json.dumps(row))
    text = "intro\n<!-- captions:start -->\n| r0 | 41.0 |\n<!-- captions:end -->\nrest\n"
    rendered, changed = render(text, tmp_path, ("captions",))
    assert changed == ["captions"] and "| 39.0 |" in rendered and "41.0" not in rendered
    assert rendered.startswith("intro\n<!-- captions:start -->\n")
    assert rendered.endswith("<!-- captions:end -->\nrest\n")
    assert render(rendered, tmp_path, ("captions",))[1] == []


def test_the_claims_table_adjusts_the_current_studies_together_and_names_the_stale_ones(tmp_path: Path) -> None:
    """Holm over the three claims of two stored studies (p 0.0039; 0.017 and 1): 0.0039 x 3, 0.017 x 2, 1."""
    from lit_mc.report import claims_summary_markdown

    for name in ("batch_norm", "pooling", "kernel_size"):  # kernel_size: stored at the first round's budget only
        (tmp_path / "studies" / name).mkdir(parents=True)
        shutil.copy(REPO / "results" / "studies" / name / "study.json", tmp_path / "studies" / name / "study.json")
    text = claims_summary_markdown(tmp_path, REPO / "configs" / "studies")
    rows = {cells[1]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in text.splitlines()[2:] if line.startswith("|"))}  # fmt: skip
    bn = rows["BatchNorm raises validation accuracy (each at its re-tuned learning rate)"]
    avg = rows["average pooling is worse than max pooling"]
    assert bn[4:7] == ["0.0039", "0.0039", "0.012"] and bn[-1] == "supported"
    assert avg[4:7] == ["0.017", "0.034", "0.034"] and avg[-1] == "supported"
    assert len(rows) == 3 and text.endswith("to be re-run: kernel_size.")


def test_the_claims_summary_writes_its_table_and_leaves_the_studies_as_stored(tmp_path: Path) -> None:
    """``lit-mc study summary`` once rewrote every study.json with the set-wide verdicts; now only claims.md."""
    from lit_mc.report import claims_summary_markdown, write_claims_summary

    stored = {}
    for name in ("batch_norm", "pooling"):
        (tmp_path / "studies" / name).mkdir(parents=True)
        stored[name] = (REPO / "results" / "studies" / name / "study.json").read_bytes()
        (tmp_path / "studies" / name / "study.json").write_bytes(stored[name])
    out = write_claims_summary(tmp_path / "studies", REPO / "configs" / "studies")
    assert out == tmp_path / "studies" / "claims.md"
    assert out.read_text() == claims_summary_markdown(tmp_path, REPO / "configs" / "studies") + "\n"
    assert "| 0.012 |" in out.read_text()  # BatchNorm's p, Holm over both studies' claims
    for name, data in stored.items():
        assert (tmp_path / "studies" / name / "study.json").read_bytes() == data


def test_a_seed_study_says_seeds_and_the_overfit_table_gives_a_verdict() -> None:
    from lit_mc.report import overfit_markdown, study_markdown

    def row(label: str, values: list[float]) -> dict:
        mean = sum(values) / len(values)
        summary = {"n": len(values), "mean": mean, "std": 0.001, "ci_low": mean - 0.002, "ci_high": mean + 0.002}
        return {"label": label, "values": values, "summary": summary, "setting": {}, "wall_s": 60}

    rep = {"hypothesis": "h", "reference": "r", "folds": 1, "seeds": [0, 1, 2], "budget": [], "metric": "test_acc",
           "rows": [row("full", [0.913, 0.914, 0.912]), row("minus x", [0.90, 0.901, 0.899])],
           "claims": [{"claim": "x helps", "verdict_text": "supported (p 0.01)"}]}  # fmt: skip
    text = study_markdown(rep)
    assert "2 settings x 3 seeds, the base config's own budget, scored on the test images" in text
    assert "paired t-test over the seeds" in text and "folds" not in text
    runs = [
        {
            "config": c,
            "first_loss": 2.3,
            "final_loss": 0.1,
            "final_acc": acc,
            "step_acc_100": step,
            "step_loss_below_0.05": None,
            "steps": 500,
        }
        for c, acc, step in (("a", 1.0, 431), ("b", 0.9, None))
    ]
    last = [line.split("|")[-2].strip() for line in overfit_markdown(runs).splitlines()[2:]]
    assert last == ["passes", "fails: check for a bug"]
