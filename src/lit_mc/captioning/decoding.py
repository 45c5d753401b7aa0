"""Greedy and beam-search decoding for every captioner, batched over images: no per-image Python loop.

A decoder only has to offer ``start(features) -> state`` and ``step(state, tokens) -> (log_probs, state,
attention)``, where ``state`` is a dict of tensors whose first dimension is the batch. Beam search then keeps
``B * k`` hypotheses as one batch, and after each step picks, per image, the ``k`` best continuations among its
``k * V`` candidates with one ``topk``, reordering the state by ``index_select``. Greedy decoding is ``k = 1``.
State entries that a decoder names in ``static_state`` (the image features, which the ``k`` beams of one image
share) are never reordered: copying them at every step was most of the cost of beam search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

State = dict[str, torch.Tensor]


class StepDecoder(Protocol):
    def start(self, features: torch.Tensor) -> State: ...

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State, torch.Tensor | None]: ...


@dataclass
class Decoded:
    """Best hypothesis per image: ``tokens`` ``(B, T)`` without ``<start>`` (padded after ``<end>`` with pad),
    its length-normalised ``score``, and per-step ``attention`` ``(B, T, cells)`` when the decoder has one."""

    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None


def _reorder(state: State, index: torch.Tensor, static: tuple[str, ...]) -> State:
    """Follow each surviving hypothesis to its source; entries in ``static`` are the same for all beams of an
    image, and a hypothesis never changes image, so they stay as they are."""
    return {key: value if key in static else value.index_select(0, index) for key, value in state.items()}


@torch.no_grad()
def beam_search(
    decoder: StepDecoder,
    features: torch.Tensor,
    start: int,
    end: int,
    pad: int,
    beam_size: int = 1,
    max_length: int = 20,
    length_penalty: float = 0.0,
) -> Decoded:
    """Decode ``features`` ``(B, cells, D)`` with beams of ``beam_size``; stop at ``<end>`` or ``max_length`` words.

    A hypothesis still going after ``max_length`` words can only continue with ``<end>`` (at its log-probability),
    so no caption is longer than ``max_length`` words, like the training captions.
    Finished hypotheses only extend with ``<pad>`` at no cost, so they keep their score while others grow. The
    final choice divides each total log-probability by ``length ** length_penalty``, the length counting the words
    and the ``<end>`` (0: raw sum, which favours short captions; 1: mean per token), as in Wu et al. 2016.
    """
    batch, k = features.shape[0], beam_size
    state = decoder.start(features.repeat_interleave(k, dim=0))
    static = tuple(getattr(decoder, "static_state", ()))
    device = features.device
    tokens = torch.full((batch * k, 1), start, dtype=torch.long, device=device)
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive at the first step
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch * k, device=device)
    attention: list[torch.Tensor] = []
    offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)
    for step in range(max_length + 1):
        log_probs, state, att = decoder.step(state, tokens[:, -1])
        vocab = log_probs.shape[-1]
        log_probs = log_probs.float()
        if step == max_length:  # max_length words said: <end> is the only word left
            log_probs[:, :end] = float("-inf")
            log_probs[:, end + 1 :] = float("-inf")
        log_probs[finished] = float("-inf")
        log_probs[finished, pad] = 0.0
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        scores, flat = candidates.topk(k, dim=1)
        source = (offsets + flat // vocab).view(-1)
        new_tokens = (flat % vocab).view(-1)
        state = _reorder(state, source, static)
        finished = finished.index_select(0, source)
        lengths = lengths.index_select(0, source) + (~finished).float()
        tokens = torch.cat([tokens.index_select(0, source), new_tokens.unsqueeze(1)], dim=1)
        if att is not None:
            attention = [a.index_select(0, source) for a in attention] + [att.index_select(0, source)]
        finished = finished | (new_tokens == end)
        if bool(finished.all()):
            break
    normalised = scores.view(-1) / lengths.clamp(min=1) ** length_penalty
    best = normalised.view(batch, k).argmax(dim=1) + offsets.view(-1)
    out_tokens = tokens.index_select(0, best)[:, 1:]
    out_att = torch.stack(attention, dim=1).index_select(0, best) if attention else None
    return Decoded(out_tokens, normalised.index_select(0, best), out_att)


def sample(
    decoder: StepDecoder, features: torch.Tensor, start: int, end: int, pad: int, max_length: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions drawn word by word from the decoder's own distribution, with gradients (self-critical training).

    Returns the tokens ``(B, T)`` without ``<start>`` (``<pad>`` after ``<end>``) and each caption's total
    log-probability of its words and its ``<end>``. As in :func:`beam_search`, a caption still going after
    ``max_length`` words ends there (its ``<end>`` is forced, at that word's log-probability).
    """
    batch = features.shape[0]
    state = decoder.start(features)
    tokens = torch.full((batch,), start, dtype=torch.long, device=features.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=features.device)
    total = torch.zeros(batch, device=features.device)
    out = []
    for step in range(max_length + 1):
        log_probs, state, _ = decoder.step(state, tokens)
        if step == max_length:
            drawn = torch.full_like(tokens, end)
        else:
            drawn = torch.multinomial(log_probs.detach().float().exp(), 1).squeeze(1)
        drawn = torch.where(finished, torch.full_like(drawn, pad), drawn)
        picked = log_probs.gather(1, drawn.unsqueeze(1)).squeeze(1)
        total = total + torch.where(finished, torch.zeros_like(picked), picked)
        out.append(drawn)
        finished = finished | (drawn == end)
        tokens = drawn
        if bool(finished.all()):
            break
    return torch.stack(out, dim=1), total
