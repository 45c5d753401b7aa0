"""CIDEr-D as a training reward: document frequencies from the training references, computed once.

Self-critical sequence training (Rennie et al., CVPR 2017) rewards each sampled caption with its CIDEr-D. The
coco-caption scorer recomputes the document frequencies from whatever set it is given, which for one batch of
images would be a different, noisy IDF at every step; here they come from a fixed corpus (the training split's
reference sets), as in the SCST reference implementations, and each image's reference vectors are kept after
their first use. Given the scored set's own references as the corpus, the scores are pycocoevalcap's ``Cider``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

Vector = tuple[list[dict[tuple[str, ...], float]], list[float], int]


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


class CiderD:
    """CIDEr-D (n = 1..4, tf-idf clipped to the reference's, Gaussian length penalty sigma, x10) against a fixed
    document-frequency table built from ``corpus``, a list of reference sets (space-separated words)."""

    def __init__(self, corpus: Sequence[Sequence[str]], sigma: float = 6.0) -> None:
        self.df: Counter = Counter()
        for refs in corpus:
            self.df.update({g for r in refs for n in range(1, 5) for g in _ngrams(r.split(), n)})
        self.log_documents = math.log(max(1, len(corpus)))
        self.sigma = sigma
        self._references: dict[tuple[str, ...], list[Vector]] = {}

    def _vector(self, text: str) -> Vector:
        words = text.split()
        vectors, norms = [], []
        for n in range(1, 5):
            counts = _ngrams(words, n)
            vec = {g: c * (self.log_documents - math.log(max(1.0, self.df[g]))) for g, c in counts.items()}
            vectors.append(vec)
            norms.append(math.sqrt(sum(v * v for v in vec.values())))
        return vectors, norms, len(words)

    def _reference_vectors(self, references: Sequence[str]) -> list[Vector]:
        key = tuple(references)
        if key not in self._references:
            self._references[key] = [self._vector(r) for r in references]
        return self._references[key]

    def score(self, hypothesis: str, references: Sequence[str]) -> float:
        hyp, hyp_norms, hyp_length = self._vector(hypothesis)
        total = 0.0
        for ref, ref_norms, ref_length in self._reference_vectors(references):
            penalty = math.exp(-((hyp_length - ref_length) ** 2) / (2 * self.sigma**2))
            for n in range(4):
                dot = sum(min(v, ref[n].get(g, 0.0)) * ref[n].get(g, 0.0) for g, v in hyp[n].items())
                if hyp_norms[n] and ref_norms[n]:
                    total += dot / (hyp_norms[n] * ref_norms[n]) * penalty / 4
        return 10.0 * total / max(1, len(references))

    def scores(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
        return [self.score(h, r) for h, r in zip(hypotheses, references, strict=True)]
