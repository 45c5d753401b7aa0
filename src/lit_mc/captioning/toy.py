"""A synthetic captioning set whose answers are known: two coloured shapes per image, with their boxes.

``write_toy_set`` writes it in Flickr8k's on-disk layout (``Images/*.jpg``, ``Flickr8k_text/`` with the token
file and the three split files) plus ``boxes.json``, so the same DataModule reads it. Captions name both objects
and their left/right relation ("a red circle left of a blue square"); because every object's box is known, the
share of attention mass inside the box of the object being named measures whether a captioner looks there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from lit_mc.captioning.annotations import OFFICIAL_SPLIT_FILES

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
TEMPLATES = (
    "a {0} left of a {1}",
    "a {1} right of a {0}",
    "a {0} and a {1}",
    "there is a {0} left of a {1}",
    "a {1} to the right of a {0}",
)


def _draw(canvas: np.ndarray, shape: str, colour: tuple[int, int, int], box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cx, cy, r = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2, (x1 - x0) / 2
    if shape == "square":
        mask = np.ones_like(xx, dtype=bool)
    elif shape == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    else:  # triangle, apex up
        mask = np.abs(xx - cx) <= (yy - y0 + 1) / 2
    canvas[y0:y1, x0:x1][mask] = colour


def toy_image(rng: random.Random, size: int) -> tuple[np.ndarray, list[dict]]:
    """One ``(size, size, 3)`` image with two distinct objects, one in each half; their names and boxes."""
    from itertools import product

    kinds = rng.sample(list(product(COLOURS, SHAPES)), 2)
    canvas = np.full((size, size, 3), 245, dtype=np.uint8)
    objects = []
    for half, (colour, shape) in enumerate(kinds):
        side = rng.randint(size // 4, size * 3 // 8)
        x0 = rng.randint(half * size // 2, (half + 1) * size // 2 - side)
        y0 = rng.randint(0, size - side)
        box = (x0, y0, x0 + side, y0 + side)
        _draw(canvas, shape, COLOURS[colour], box)
        objects.append({"colour": colour, "shape": shape, "box": list(box)})
    return canvas, objects


def write_toy_set(
    dest: str | Path, train: int = 400, val: int = 50, test: int = 50, size: int = 64, seed: int = 0, captions: int = 5
) -> Path:
    """Write the toy set to ``dest`` (deterministic in ``seed``), ``captions`` captions per image; returns ``dest``."""
    from PIL import Image

    dest = Path(dest)
    (dest / "Images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines, boxes, names = [], {}, []
    for i in range(train + val + test):
        image, objects = toy_image(rng, size)
        name = f"toy_{i:05d}.jpg"
        Image.fromarray(image).save(dest / "Images" / name, quality=95)
        left, right = (f"{o['colour']} {o['shape']}" for o in objects)
        lines += [f"{name}#{k}\t{t.format(left, right)}" for k, t in enumerate(TEMPLATES[:captions])]
        boxes[name] = objects
        names.append(name)
    text = dest / "Flickr8k_text"
    text.mkdir(exist_ok=True)
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    parts = {"train": names[:train], "val": names[train : train + val], "test": names[train + val :]}
    for split, file in OFFICIAL_SPLIT_FILES.items():
        (text / file).write_text("\n".join(parts[split]) + "\n")
    (dest / "boxes.json").write_text(json.dumps(boxes))
    return dest


def box_coverage(box: list[int], grid: tuple[int, int], size: int) -> torch.Tensor:
    """The fraction of each grid cell's area inside ``box`` (pixel coordinates), ``(cells,)``."""
    rows, cols = grid
    x0, y0, x1, y1 = box

    def overlap(cells: int, lo: float, hi: float) -> torch.Tensor:  # share of each cell's 1-D extent in [lo, hi]
        step = size / cells
        starts = torch.arange(cells) * step
        return ((starts + step).clamp(max=hi) - starts.clamp(min=lo)).clamp(min=0) / step

    oy, ox = overlap(rows, y0, y1), overlap(cols, x0, x1)
    return (oy[:, None] * ox[None, :]).flatten()


def attention_in_box_by_word(
    words: list[str], attention: torch.Tensor, objects: list[dict], grid: tuple[int, int], size: int
) -> list[dict[str, float]]:
    """For every object a caption names ("<colour> <shape>"), the attention mass inside its box while the colour
    word and while the shape word is produced, and the box's share of the image (what uniform attention would
    score). ``attention[t]`` (``(cells,)``, or ``(..., cells)`` per layer and head) produced ``words[t]``."""
    found = []
    for t in range(1, len(words)):
        match = [o for o in objects if o["colour"] == words[t - 1] and o["shape"] == words[t]]
        if not match:
            continue
        coverage = box_coverage(match[0]["box"], grid, size)
        colour, shape = ((attention[i] * coverage).sum(dim=-1) for i in (t - 1, t))
        x0, y0, x1, y1 = match[0]["box"]
        found.append({"colour": colour, "shape": shape, "share": (x1 - x0) * (y1 - y0) / size**2})
    return found


def attention_in_box(
    words: list[str], attention: torch.Tensor, objects: list[dict], grid: tuple[int, int], size: int
) -> list[tuple[float, float]]:
    """For every object a caption names, the attention mass inside its box averaged over its two words, paired with
    the box's share of the image (see :func:`attention_in_box_by_word`)."""
    return [(float((f["colour"] + f["shape"]) / 2), f["share"])
            for f in attention_in_box_by_word(words, attention, objects, grid, size)]  # fmt: skip
