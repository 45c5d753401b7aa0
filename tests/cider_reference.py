"""CIDEr-D written out from its definition, as a reference for the tests (not used by lit_mc).

Vedantam, Zitnick and Parikh, "CIDEr: Consensus-based Image Description Evaluation", CVPR 2015, sec. 3 and 5
(CIDEr-D), with the choices of the coco-caption code that papers report: n = 1..4; document frequencies over the
reference sets of the scored corpus, idf = log(images) - log(max(1, df)); each n-gram's tf-idf clipped to the
reference's before the dot product; a Gaussian penalty of sigma = 6 on the difference in words (coco-caption
counts bigrams, one fewer in every non-empty caption: the same difference); the mean over n and over references,
times 10.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0) -> list[float]:
    """Per-image CIDEr-D of ``hypotheses[i]`` against ``references[i]`` (space-separated words)."""
    hyps = [h.split() for h in hypotheses]
    refs = [[r.split() for r in rs] for rs in references]
    document_frequency = Counter(
        gram for rs in refs for gram in {g for r in rs for n in range(1, 5) for g in ngrams(r, n)}
    )

    def tf_idf(words: list[str], n: int) -> dict[tuple[str, ...], float]:
        idf = {g: math.log(len(hyps)) - math.log(max(1.0, document_frequency[g])) for g in ngrams(words, n)}
        return {g: count * idf[g] for g, count in ngrams(words, n).items()}

    scores = []
    for h, rs in zip(hyps, refs, strict=True):
        total = 0.0
        for r in rs:
            penalty = math.exp(-((len(h) - len(r)) ** 2) / (2 * sigma**2))
            for n in range(1, 5):
                gh, gr = tf_idf(h, n), tf_idf(r, n)
                dot = sum(min(v, gr.get(g, 0.0)) * gr.get(g, 0.0) for g, v in gh.items())
                norms = math.sqrt(sum(v * v for v in gh.values())) * math.sqrt(sum(v * v for v in gr.values()))
                total += (dot / norms if norms else 0.0) * penalty / 4  # mean over n = 1..4
        scores.append(10.0 * total / len(rs))
    return scores
