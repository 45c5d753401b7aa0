"""Attention read as numbers, not only drawn: how concentrated each word's attention is, by word class.

Xu et al. (2015) observe that soft attention is sharp on the objects a caption names and diffuse on the words that
carry grammar. The entropy of a word's attention over the grid measures that: ``log(cells)`` for uniform attention,
0 for attention on one cell; here it is divided by ``log(cells)`` so 1 means uniform. Words are classed by a closed
list of English function words (determiners, prepositions, conjunctions, pronouns, auxiliaries), everything else
being a content word: no tagger model is needed, and the classes are the ones the observation is about.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

FUNCTION_WORDS = frozenset(
    "a an the this that these those some any each every another "
    "of in on at to into onto from with without by for over under above below near behind beside between through "
    "across along around up down out off toward towards against among next while "
    "and or but as than so "
    "he she it they them his her its their him we us our you your i me my "
    "is are was were be been being has have had do does did can will would could "
    "there here who which what where when".split()
)


def word_class(word: str) -> str:
    """``"function"`` for a closed-class English word, else ``"content"``."""
    return "function" if word in FUNCTION_WORDS else "content"


def normalised_entropy(attention: torch.Tensor) -> torch.Tensor:
    """Entropy of each attention row over its last dimension, divided by ``log(cells)``: 1 uniform, 0 one cell."""
    p = attention.float().clamp_min(0)
    p = p / p.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=-1)
    return entropy / math.log(attention.shape[-1])


def entropy_by_word_class(
    captions: Sequence[Sequence[str]],
    attentions: Sequence[torch.Tensor],
    classify: Callable[[str], str] = word_class,
) -> dict[str, dict[str, float]]:
    """Mean normalised entropy of the attention that produced each word, per class of word: ``attentions[i][t]``
    (``(cells,)``, or ``(..., cells)`` for per-layer/head maps, averaged over the leading dimensions) is the
    attention used to produce ``captions[i][t]``."""
    sums: dict[str, list[float]] = {}
    for words, attention in zip(captions, attentions, strict=True):
        entropy = normalised_entropy(attention[: len(words)])
        for word, e in zip(words, entropy, strict=False):
            sums.setdefault(classify(word), []).append(float(e.mean()))
    return {c: {"words": len(v), "mean_entropy": sum(v) / len(v)} for c, v in sorted(sums.items())}


def entropy_by_head(
    captions: Sequence[Sequence[str]], maps: Sequence[torch.Tensor], classify: Callable[[str], str] = word_class
) -> list[dict[str, Any]]:
    """Per layer and head (``maps[i]``: ``(layers, heads, T, cells)``), the mean normalised entropy per word class."""
    layers, heads = maps[0].shape[:2]
    out = []
    for layer in range(layers):
        for head in range(heads):
            per_class = entropy_by_word_class(captions, [m[layer, head] for m in maps], classify)
            out.append({"layer": layer, "head": head, **{c: v["mean_entropy"] for c, v in per_class.items()}})
    return out


def greedy_attention(module: Any, features: torch.Tensor) -> tuple[list[list[str]], list[torch.Tensor], list[Any]]:
    """Greedy captions of ``features`` with the attention that produced each word ``(T, cells)``, and for a
    captioner with per-layer/head maps (the transformer) those ``(layers, heads, T, cells)`` (else ``None``s);
    empty lists for a captioner without attention."""
    with torch.no_grad():
        decoded = module.generate(features, beam_size=1)
        if decoded.attention is None:
            return [], [], []
        captions, attentions, heads = [], [], []
        for i in range(len(features)):
            ids = decoded.tokens[i].tolist()
            words = module.vocab.decode(ids).split()
            captions.append(words)
            attentions.append(decoded.attention[i][: len(words)])
            if hasattr(module, "attention_maps") and words:
                tokens = torch.tensor([[module.vocab.start, *ids[: len(words)]]], device=features.device)
                heads.append(module.attention_maps(features[i : i + 1], tokens)[0][:, :, : len(words)])
            else:
                heads.append(None)
    return captions, attentions, heads
