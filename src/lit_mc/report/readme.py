"""The README's result tables, rendered from the committed results so that they cannot drift from them.

    python -m lit_mc.report.readme           # rewrite the marked blocks of README.md
    python -m lit_mc.report.readme --check   # exit 1, naming the block, when README.md differs from the results

A block is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; only the blocks named in ``BLOCKS``
are rendered (the others are still written by hand).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from lit_mc.io import atomic_write_text
from lit_mc.report.captioning import (
    caption_result_runs,
    caption_seed_table,
    paired_comparison_markdown,
    scst_comparison_markdown,
    transformer_recipe_markdown,
)


def captions_block(root: Path) -> str:
    """Test scores over seeds, every analysed run against Show and Tell image by image, and the recipe search."""
    parts = ["Test split (1,000 images), scores x100, mean ± sd over seeds, each seed at the beam size and length "
             "penalty chosen on validation:", caption_seed_table(root)]  # fmt: skip
    analysed = [n for n, runs in caption_result_runs(root).items() if (runs[0] / "per_image.csv").is_file()]
    others = [n for n in analysed if n != "show_and_tell"]
    if "show_and_tell" in analysed and others:
        parts += ["Each run minus Show and Tell on the same test images (per-image CIDEr-D and BLEU-4, x100; a run "
                  "with seeds counts each image's mean over them), 95% paired-bootstrap interval over the images:",
                  paired_comparison_markdown(others, "show_and_tell", root)]  # fmt: skip
    scst = scst_comparison_markdown(root)
    if scst:
        parts += ["Self-critical fine-tuning against the cross-entropy seed it started from, on the same test images "
                  "(per-image means, x100):", scst]  # fmt: skip
    parts += ["The transformer's recipe search (seed 0, 8 epochs, greedy CIDEr x100 on the 1,000 validation images):",
              transformer_recipe_markdown(root)]  # fmt: skip
    return "\n\n".join(parts)


def studies_block(root: Path) -> str:
    """Every claim of the CIFAR-10 studies stored at their current budget, with its set-wide Holm verdict."""
    from lit_mc.report.classification import claims_summary_markdown

    return claims_summary_markdown(root)


def best_model_block(root: Path) -> str:
    """The best_model study's full recipe and ablations: its report once every run is stored, else its progress."""
    from lit_mc.report.classification import load_study_progress, study_markdown, study_progress_markdown
    from lit_mc.report.common import read_json

    folder = root / "studies" / "best_model"
    if (progress := load_study_progress("best_model", root)) is not None:
        return study_progress_markdown(progress)
    if (folder / "study.json").is_file():
        return study_markdown(read_json(folder / "study.json"))
    return "No run of the best_model study is stored yet."


BLOCKS: dict[str, Callable[[Path], str]] = {
    "studies": studies_block,
    "captions": captions_block,
    "best_model": best_model_block,
}


def render(text: str, root: Path, names: tuple[str, ...] = tuple(BLOCKS)) -> tuple[str, list[str]]:
    """``text`` with the blocks ``names`` rendered from ``root``, and the names of the blocks that changed."""
    changed = []
    for name in names:
        block = BLOCKS[name]
        pattern = re.compile(rf"(<!-- {name}:start -->\n)(.*?)(<!-- {name}:end -->)", re.S)
        match = pattern.search(text)
        if match is None:
            raise SystemExit(f"lit-mc: README has no <!-- {name}:start --> ... <!-- {name}:end --> block; add one")
        body = block(root).rstrip("\n") + "\n"
        if match.group(2) != body:
            changed.append(name)
            text = text[: match.start(2)] + body + text[match.end(2) :]
    return text, changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    opts = parser.parse_args(argv)
    text, changed = render(opts.readme.read_text(), opts.results)
    if opts.check:
        if changed:
            sys.exit(f"lit-mc: {opts.readme} blocks {', '.join(changed)} differ from {opts.results}; "
                     "run python -m lit_mc.report.readme")  # fmt: skip
        return
    if changed:
        atomic_write_text(opts.readme, text)
    print(f"{opts.readme}: " + (f"rendered {', '.join(changed)}" if changed else "up to date"))


if __name__ == "__main__":
    main()
