"""Caption cleaning and the word map, built on the training split only and stored inside every checkpoint.

A caption model is only meaningful together with its word map: token 17 means whatever the vocabulary it was
trained with says. So the :class:`Vocabulary` serialises to a plain dict (JSON-safe, loads with
``weights_only=True``) that the captioner writes into each checkpoint and compares on resume.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
_NOT_WORD = re.compile(r"[^a-z0-9' ]+")


def clean_caption(text: str) -> list[str]:
    """Lower-case words: punctuation dropped, possessive/contraction apostrophes kept (``dog's``), no empties."""
    return _NOT_WORD.sub(" ", text.lower()).replace(" '", " ").split()


@dataclass(frozen=True)
class Vocabulary:
    """Index <-> word. Index 0 is ``<pad>``, then ``<start>``, ``<end>``, ``<unk>``, then words by frequency."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], min_count: int = 5) -> Vocabulary:
        """Words seen at least ``min_count`` times (most frequent first, ties alphabetical)."""
        counts = Counter(word for caption in captions for word in caption)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept))

    def __post_init__(self) -> None:
        if tuple(self.words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    @property
    def pad(self) -> int:
        return 0

    @property
    def start(self) -> int:
        return 1

    @property
    def end(self) -> int:
        return 2

    @property
    def unk(self) -> int:
        return 3

    def encode(self, words: Sequence[str], max_length: int) -> list[int]:
        """``<start> w1 .. wn <end>``, words cut to ``max_length`` and unknown ones mapped to ``<unk>``."""
        index = self._index  # type: ignore[attr-defined]
        return [self.start, *(index.get(w, self.unk) for w in words[:max_length]), self.end]

    def encode_batch(self, captions: Sequence[Sequence[str]], max_length: int) -> torch.Tensor:
        """A ``(N, max_length + 2)`` LongTensor of encoded captions, right-padded with ``<pad>``."""
        out = torch.full((len(captions), max_length + 2), self.pad, dtype=torch.long)
        for row, words in enumerate(captions):
            ids = self.encode(words, max_length)
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first ``<end>``; ``<start>`` and ``<pad>`` skipped."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.end:
                break
            if i not in (self.pad, self.start):
                words.append(self.words[i])
        return " ".join(words)

    def state_dict(self) -> dict[str, list[str]]:
        return {"words": list(self.words)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> Vocabulary:
        return cls(tuple(state["words"]))
