"""Reading Flickr8k's caption files: the original token file with the official split lists, or Karpathy's JSON.

Both layouts end as one :class:`Annotations`: image file name -> its raw captions, and the three splits as
lists of image names. Problems that concern a single line or image (the token file's known stray line, a
caption for an image that is not in the images folder, a caption with no words) are counted and reported in one
warning; a file that is not a caption file at all stops with a one-line :class:`LitMcError`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from lit_mc.captioning.vocab import clean_caption
from lit_mc.errors import LitMcError

SPLITS = ("train", "val", "test")
OFFICIAL_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


@dataclass
class Annotations:
    """Captions per image and the image names of each split (only images that exist and have captions)."""

    captions: dict[str, list[str]]
    splits: dict[str, list[str]]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count, reported once as a warning


def _read_text(path: Path, what: str, fix: str) -> str:
    if not path.is_file():
        raise LitMcError(f"{what} {path} does not exist", fix)
    try:
        text = path.read_text(encoding="utf-8-sig")  # files saved by Windows editors start with a BOM
    except UnicodeDecodeError as e:
        raise LitMcError(f"{what} {path} is not UTF-8 text ({e.reason} at byte {e.start})", fix) from None
    if not text.strip():
        raise LitMcError(f"{what} {path} is empty", fix)
    return text


def read_token_file(path: Path) -> dict[str, list[str]]:
    """``<image>#<k>\\t<caption>`` lines -> image name -> captions (in file order)."""
    fix = "point --data.captions_file at Flickr8k.token.txt (lines '<image>#<k><TAB><caption>')"
    captions: dict[str, list[str]] = {}
    for number, line in enumerate(_read_text(path, "caption file", fix).splitlines(), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        if not tab or "#" not in key:
            raise LitMcError(
                f"caption file {path} line {number} is not '<image>#<k><TAB><caption>': {line[:60]!r}", fix
            )
        captions.setdefault(key.rsplit("#", 1)[0], []).append(caption.strip())
    return captions


def read_split_file(path: Path) -> list[str]:
    """One image name per line."""
    text = _read_text(path, "split file", "pass the official Flickr_8k.{train,dev,test}Images.txt files")
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_karpathy_json(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Karpathy's ``dataset_flickr8k.json``: captions and splits (``restval`` counts as train)."""
    fix = "pass Karpathy's dataset_flickr8k.json ({'images': [{'filename', 'split', 'sentences': [{'raw'}]}]})"
    try:
        images = json.loads(_read_text(path, "Karpathy split file", fix))["images"]
        captions = {im["filename"]: [s["raw"].strip() for s in im["sentences"]] for im in images}
        splits = {name: [] for name in SPLITS}
        for im in images:
            splits["train" if im["split"] == "restval" else im["split"]].append(im["filename"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise LitMcError(f"Karpathy split file {path} is malformed ({type(e).__name__}: {e})", fix) from None
    return captions, splits


def load_annotations(
    images_dir: Path, captions_file: Path | None, split_dir: Path | None, karpathy_json: Path | None
) -> Annotations:
    """Captions and splits from either layout, keeping only images present in ``images_dir``."""
    if not images_dir.is_dir():
        raise LitMcError(
            f"images folder {images_dir} does not exist",
            "link the Flickr8k Images/ folder there (see data/README.md) or set --data.data_dir",
        )
    if karpathy_json is not None:
        captions, splits = read_karpathy_json(karpathy_json)
        caption_source, split_sources = karpathy_json, dict.fromkeys(SPLITS, karpathy_json)
    else:
        assert captions_file is not None and split_dir is not None
        captions = read_token_file(captions_file)
        split_sources = {name: split_dir / OFFICIAL_SPLIT_FILES[name] for name in SPLITS}
        splits = {name: read_split_file(path) for name, path in split_sources.items()}
        caption_source = captions_file
    skipped: dict[str, int] = {}
    # a caption of punctuation only would be a target that teaches the model to say nothing
    total = sum(len(c) for c in captions.values())
    captions = {name: words for name, c in captions.items() if (words := [x for x in c if clean_caption(x)])}
    if not captions:
        raise LitMcError(
            f"every caption in {caption_source} is empty once punctuation is removed",
            "use a caption file whose captions have words",
        )
    if empty := total - sum(len(c) for c in captions.values()):
        skipped["empty caption"] = empty
    present = {p.name for p in images_dir.iterdir()}
    if missing := [n for n in captions if n not in present]:
        skipped["captioned image not in the images folder"] = len(missing)
        for name in missing:
            del captions[name]
    for split, names in splits.items():
        kept = [n for n in names if n in captions]
        if not kept:  # found now rather than as a traceback when that split is first evaluated
            raise LitMcError(
                f"{split_sources[split]} lists {len(names)} images for {split}, none of them in {images_dir} "
                "with a caption",
                "check that the split files, the caption file and the images folder belong to the same data set",
            )
        if len(kept) < len(names):
            skipped[f"{split} image without captions or file"] = len(names) - len(kept)
        splits[split] = kept
    if skipped:
        details = "; ".join(f"{count} x {reason}" for reason, count in skipped.items())
        warnings.warn(f"Flickr8k: skipped {details}", stacklevel=2)
    return Annotations(captions, splits, skipped)
