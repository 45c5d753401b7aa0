"""Build the slide decks of the two studies from the stored results: ``make slides``.

A deck's source is ``notebooks/slides_<nn>_<study>.py`` (jupytext; each slide starts at a markdown cell of slide
type "slide"). This script executes it (no training: it reads ``results/``), exports it with nbconvert's slides
exporter through the offline template ``notebooks/templates/lit_mc_slides`` (code hidden, reveal.js inlined, so the
one HTML file opens anywhere without a network), writes ``slides/<name>.html`` and, when Chromium is installed, a
screenshot of every slide to ``slides/screenshots/<name>/`` to look at.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from execute import HERE, run
from lit_mc.io import atomic_write_text

DECKS = ("slides_01_cifar10", "slides_02_flickr8k")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def reveal_assets(reveal: Path) -> dict[str, str]:
    """reveal.js's script and style sheets from an unpacked ``npm pack reveal.js`` folder; the theme's ``@import``
    of web fonts is dropped (no network needed, the fonts fall back)."""
    files = {"js": "dist/reveal.js", "css": "dist/reveal.css", "theme": "dist/theme/white.css"}
    missing = [str(reveal / f) for f in files.values() if not (reveal / f).is_file()]
    if missing:
        sys.exit(f"error: {missing[0]} not found: give --reveal the unpacked reveal.js package "
                 "(`make slides` fetches it: npm pack reveal.js@4.6.1)")  # fmt: skip
    assets = {key: (reveal / f).read_text() for key, f in files.items()}
    assets["theme"] = re.sub(r"@import[^;]*;", "", assets["theme"])
    return assets


def slide_count(nb: nbformat.NotebookNode) -> int:
    return sum(cell.metadata.get("slideshow", {}).get("slide_type") == "slide" for cell in nb.cells)


def title(nb: nbformat.NotebookNode) -> str:
    """The first level-1 heading of a slide: the deck's title."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (heading := re.search(r"^# (.+)$", cell.source, re.M)):
            return heading.group(1)
    return "slides"


def export(nb: nbformat.NotebookNode, assets: dict[str, str]) -> str:
    """The executed notebook as one self-contained reveal.js HTML page, inputs hidden."""
    from nbconvert import SlidesExporter

    exporter = SlidesExporter(
        template_name="lit_mc_slides",
        extra_template_basedirs=[str(HERE / "templates")],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    html, _ = exporter.from_notebook_node(nb, resources={"lit_mc_reveal": {**assets, "title": title(nb)}})
    return html


def screenshots(page: Path, slides: int, out: Path, browser: str) -> list[Path]:
    """One PNG per slide (1280x720, as the deck is laid out), taken by headless Chromium; written in a temporary
    folder and moved into ``out`` once all are taken."""
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(slides):
            shot = Path(tmp) / f"slide_{i + 1:02d}.png"
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--window-size=1280,720", "--virtual-time-budget=5000", f"--screenshot={shot}",
                 f"{page.resolve().as_uri()}#/{i}"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    return sorted(out.glob("slide_*.png"))


def without_stderr(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Warnings a library printed while the deck ran are no part of a slide."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    return nb


def build(name: str, assets: dict[str, str], out: Path, browser: str | None) -> tuple[Path, int, list[Path]]:
    nb = without_stderr(run(name))
    page = out / f"{name.removeprefix('slides_')}.html"
    atomic_write_text(page, export(nb, assets))
    count = slide_count(nb)
    shots = screenshots(page, count, out / "screenshots" / page.stem, browser) if browser else []
    return page, count, shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(DECKS), help="decks to build (default: both)")
    parser.add_argument("--reveal", type=Path, default=Path("build/reveal.js/package"), help="unpacked reveal.js")
    parser.add_argument("--out", type=Path, default=HERE.parent / "slides", help="where the decks are written")
    parser.add_argument("--no-screenshots", action="store_true", help="skip the Chromium screenshots")
    args = parser.parse_args()
    assets = reveal_assets(args.reveal)
    browser = None if args.no_screenshots else next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None and not args.no_screenshots:
        print("no Chromium found (apt-get install chromium): decks built without screenshots")
    for name in args.names:
        page, count, shots = build(name, assets, args.out, browser)
        print(f"{page}: {count} slides" + (f", screenshots in {shots[0].parent}" if shots else ""))


if __name__ == "__main__":
    main()
