"""BLEU-1..4, METEOR, ROUGE-L and CIDEr with pycocoevalcap, the scorers the captioning literature reports.

Captions and references are compared as already-cleaned, space-separated lower-case words (the same
:func:`~lit_mc.captioning.vocab.clean_caption` for both), so the Java PTB tokenizer step is not needed; METEOR
still runs its Java jar (shipped in the package). SPICE is left out: it downloads a Stanford CoreNLP model at run
time, which an offline machine cannot do.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    res = {i: [h if h.strip() else "unk"] for i, h in enumerate(hypotheses)}
    gts = {i: list(refs) for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)}
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            scores["meteor"] = float(scorer.compute_score(gts, res)[0])
        finally:
            del scorer
    return scores
