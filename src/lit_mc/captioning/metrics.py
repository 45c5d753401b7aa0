"""BLEU-1..4, METEOR, ROUGE-L and CIDEr with pycocoevalcap, the scorers the captioning literature reports.

Captions and references are compared as already-cleaned, space-separated lower-case words (the same
:func:`~lit_mc.captioning.vocab.clean_caption` for both), so the Java PTB tokenizer step is not needed; METEOR
still runs its Java jar (shipped in the package). SPICE is left out: it downloads a Stanford CoreNLP model at run
time, which an offline machine cannot do.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

METRIC_NAMES = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")


def coco_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True
) -> dict[str, float]:
    """Corpus-level scores of ``hypotheses[i]`` against ``references[i]`` (each a list of strings)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
    # an empty hypothesis makes METEOR's Java process wait forever; score it as one unknown word instead
    gts, res = _scorer_inputs(hypotheses, references)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    if meteor:
        scores["meteor"] = _meteor_score(gts, res)
    return scores


@functools.cache
def _meteor() -> Any:
    """One METEOR Java process for the whole Python process: starting it (loading its paraphrase tables) takes
    seconds, scoring 1,000 captions does not. It ends with Python (its stdin closes)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _meteor_score(gts: dict, res: dict) -> float:
    """Corpus METEOR through the shared process; a failed call stops that process (its pipe may hold half an
    answer and its lock stays taken), so the next call starts a fresh one."""
    scorer = _meteor()
    try:
        return float(scorer.compute_score(gts, res)[0])
    except BaseException:
        _meteor.cache_clear()
        scorer.meteor_p.kill()
        if scorer.lock.locked():  # its __del__ takes the lock: left taken, garbage collection would wait for ever
            scorer.lock.release()
        raise


def _scorer_inputs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    res = {i: [h if h.strip() else "unk"] for i, h in enumerate(hypotheses)}
    return {i: list(refs) for i, refs in enumerate(references)}, res


def per_image_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, list[float]]:
    """CIDEr-D and BLEU-4 of each caption against its own references (pycocoevalcap's per-image scores; the
    corpus CIDEr-D is their mean, while the corpus BLEU-4 is not: it pools the n-gram counts first)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    gts, res = _scorer_inputs(hypotheses, references)
    cider = [float(x) for x in Cider().compute_score(gts, res)[1]]
    bleu4 = [float(x) for x in Bleu(4).compute_score(gts, res, verbose=0)[1][3]]
    return {"cider": cider, "bleu4": bleu4}


def caption_diversity(
    captions: Sequence[str], training_captions: Sequence[str], unk: str = "<unk>"
) -> dict[str, float]:
    """How varied the generated captions are, and how much they copy: the share of distinct captions, the share
    that appear verbatim among the training captions, the number of distinct words used, the share of captions
    that repeat a word bigram, and the share of words that are ``unk``."""
    seen = set(training_captions)
    words = [c.split() for c in captions]
    bigram_repeats = sum(len(set(itertools.pairwise(w))) < max(len(w) - 1, 0) for w in words)
    total_words = sum(len(w) for w in words)
    return {
        "captions": len(captions),
        "distinct_share": len(set(captions)) / max(len(captions), 1),
        "copied_from_training_share": sum(c in seen for c in captions) / max(len(captions), 1),
        "vocabulary_used": len({word for w in words for word in w}),
        "repeated_bigram_share": bigram_repeats / max(len(captions), 1),
        "unk_word_share": sum(word == unk for w in words for word in w) / max(total_words, 1),
        "mean_length": total_words / max(len(captions), 1),
    }
