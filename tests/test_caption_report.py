"""The captioning report's tables read the campaign's results layout: one folder per run, or one per seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_mc.report.captioning import (
    CAPTION_METRICS,
    caption_diversity_table,
    caption_result_runs,
    caption_seed_table,
    overfit_captioning_figure,
    overfit_captioning_markdown,
)


def write_run(folder: Path, beam: int, cider: float, diversity: bool = True, decoding: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    scores = {m: 0.2 for m in CAPTION_METRICS} | {"cider": cider}
    (folder / "test_metrics.json").write_text(json.dumps({f"beam{beam}": scores, "beam9": {"cider": 9.0}}))
    summary = {"beam": beam, "mean_cider": cider}
    if diversity:
        summary |= {
            "diversity": {"captions": 1000, "distinct_share": 0.4, "copied_from_training_share": 0.25,
                          "vocabulary_used": 310, "repeated_bigram_share": 0.01, "unk_word_share": 0.0005,
                          "mean_length": 9.25},
            "cider_by_reference_length": [{"mean_cider": 0.7}, {"mean_cider": 0.5}, {"mean_cider": 0.3}],
            "size": {"params": 12_500_000, "trained_params": 2_500_000, "mflops_per_caption": 31.25},
        }  # fmt: skip
    (folder / "examples.json").write_text(json.dumps(summary))
    if decoding:
        (folder / "decoding.json").write_text(json.dumps({"best": {"beam_size": beam, "length_penalty": 0.5}}))


def rows_of(table: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                               for line in table.splitlines()[2:])}  # fmt: skip


def test_seeds_are_summarised_by_mean_and_spread_and_single_runs_as_they_are(tmp_path: Path) -> None:
    root = tmp_path / "flickr8k"
    for seed, cider in enumerate((0.60, 0.64, 0.62)):
        write_run(root / "transformer" / f"seed{seed}", beam=3, cider=cider, decoding=True)
    write_run(root / "show_and_tell", beam=1, cider=0.49, diversity=False)
    (root / "notes").mkdir()  # a folder without an analysed run is not a run
    assert {k: len(v) for k, v in caption_result_runs(tmp_path).items()} == {"show_and_tell": 1, "transformer": 3}
    write_run(root / "transformer", beam=3, cider=0.42)  # a first-round single run beside the seeds: not counted
    assert [p.name for p in caption_result_runs(tmp_path)["transformer"]] == ["seed0", "seed1", "seed2"]
    rows = rows_of(caption_seed_table(tmp_path))
    assert rows["transformer"][:2] == ["3", "beam 3 / penalty 0.5 (validation)"]
    assert rows["transformer"][-3] == "62.0 ± 2.0"  # CIDEr at the analysed beam, not beam 9
    assert rows["transformer"][-2:] == ["12.50M (2.50M trained)", "31.2"]
    (root / "transformer" / "seed2" / "decoding.json").write_text(
        json.dumps({"best": {"beam_size": 5, "length_penalty": 1.0}})
    )
    assert rows_of(caption_seed_table(tmp_path))["transformer"][1] == (
        "beam 3 / penalty 0.5 (seed0, seed1); beam 5 / penalty 1 (seed2) (validation)"
    )  # each seed's own choice
    single = rows["show_and_tell (first round)"]  # a run from before the seeded layout says so
    assert single[:2] == ["1", "greedy"] and single[-3:] == ["49.0", "-", "-"]
    write_run(root / "show_and_tell_scst", beam=3, cider=0.55, decoding=True, diversity=False)  # a single run by design
    assert rows_of(caption_seed_table(tmp_path))["show_and_tell_scst"][:2] == ["1", "beam 3 / penalty 0.5 (validation)"]
    diversity = rows_of(caption_diversity_table(tmp_path))
    assert list(diversity) == ["transformer"]  # the run analysed before diversity was stored is left out
    assert diversity["transformer"] == ["1000", "40.0", "25.0", "310", "1.0", "0.05", "9.2", "70 / 50 / 30"]


def test_the_overfit_table_and_figure_read_the_benchmark(tmp_path: Path) -> None:
    record = {"model": "show_attend_tell", "pairs": 20, "steps": 3, "first_ce": 8.5, "final_ce": 0.25,
              "memorised": 1, "images": 2, "wall_s": 12.0, "curve": {"train_ce": [8.5, 2.0, 0.25]},
              "captions": [{"image": "a.jpg", "caption": "a dog runs", "memorised": True,
                            "references": ["a dog runs", "a brown dog"]},
                           {"image": "b.jpg", "caption": "a man", "memorised": False,
                            "references": ["a woman"]}]}  # fmt: skip
    (tmp_path / "overfit_captioning.json").write_text(json.dumps([record]))
    table = overfit_captioning_markdown(tmp_path)
    assert "| show_attend_tell | 20 | 3 | 8.50 | 0.250 | 1 of 2 | 12 |" in table
    assert "| show_attend_tell | a.jpg | a dog runs | yes | a dog runs<br>a brown dog |" in table
    fig = overfit_captioning_figure(tmp_path)
    line = fig.axes[0].lines[0]
    assert list(line.get_ydata()) == pytest.approx([8.5, 2.0, 0.25]) and fig.axes[0].get_yscale() == "log"


def test_side_by_side_captions_show_every_run_on_the_same_random_images(tmp_path: Path) -> None:
    from lit_mc.report.captioning import side_by_side_captions_markdown

    root = tmp_path / "flickr8k"
    images = [f"im{i}.jpg" for i in range(10)]
    for name, seeds in (("show_and_tell", [""]), ("transformer", ["seed0", "seed1"])):
        for seed in seeds:
            folder = root / name / seed
            write_run(folder, beam=1, cider=0.5)
            lines = ["row,image,caption,cider,bleu4"] + [f"{i},{im},{name} {seed} says {i},0.{i},0.1"
                                                        for i, im in enumerate(images)]  # fmt: skip
            (folder / "per_image.csv").write_text("\n".join(lines) + "\n")
    table = side_by_side_captions_markdown({"im3.jpg": ["r1", "r2", "r3"]}, images=4, seed=1, root=tmp_path)
    rows = rows_of(table)
    assert len(rows) == 4 and set(rows) <= set(images)
    for image, cells in rows.items():
        i = images.index(image)
        assert cells[:2] == [f"show_and_tell  says {i} ({10 * i})", f"transformer seed0 says {i} ({10 * i})"]
        assert cells[2] == ("r1<br>r2" if image == "im3.jpg" else "-")
    assert side_by_side_captions_markdown(images=4, seed=1, root=tmp_path) != side_by_side_captions_markdown(
        images=4, seed=2, root=tmp_path
    )  # another seed, other images


def test_attention_entropy_table_reads_function_and_content_words(tmp_path: Path) -> None:
    from lit_mc.report.captioning import attention_entropy_table

    folder = tmp_path / "flickr8k" / "show_attend_tell"
    write_run(folder, beam=1, cider=0.5)
    summary = json.loads((folder / "examples.json").read_text())
    summary["attention_entropy"] = {
        "images": 1000,
        "by_word_class": {
            "content": {"words": 4000, "mean_entropy": 0.61},
            "function": {"words": 5000, "mean_entropy": 0.83},
        },
    }
    (folder / "examples.json").write_text(json.dumps(summary))
    write_run(tmp_path / "flickr8k" / "show_and_tell", beam=1, cider=0.5)  # no attention: no row
    rows = rows_of(attention_entropy_table(tmp_path))
    assert rows == {"show_attend_tell": ["1000", "0.610 (4000)", "0.830 (5000)", "+0.220"]}


def test_example_captions_name_the_decoding_they_were_scored_at(tmp_path: Path) -> None:
    from lit_mc.report.captioning import caption_examples_markdown

    example = {"image": "a.jpg", "caption": "a dog runs", "cider": 1.5, "references": ["a dog runs"]}
    for beam, header in ((1, "generated (greedy)"), (5, "generated (beam 5)")):
        folder = tmp_path / "flickr8k" / f"m{beam}"
        folder.mkdir(parents=True)
        (folder / "examples.json").write_text(json.dumps({"beam": beam, "best": [example]}))
        assert header in caption_examples_markdown(f"m{beam}", "best", tmp_path).splitlines()[0]
