"""TransformerCaptioner: a transformer decoder with cross-attention to the grid features (Vaswani et al. 2017;
as in "Attention on Attention"/"Meshed-Memory" captioners, minus their extras).

Built from ``torch.nn`` rather than Hugging Face ``transformers``: an HF decoder brings its own config, tokenizer
and cache conventions for a model we train from scratch on our own vocabulary, and hides the cross-attention
weights behind ``output_attentions`` plumbing, while the attention maps are one of the things this study measures.
With ``nn.MultiheadAttention`` every layer returns its per-head cross-attention directly, in a file one can read.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lit_mc.captioning.decoding import State
from lit_mc.captioning.module import CaptionModule


def sinusoid_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine position code of Vaswani et al. 2017, ``(length, dim)``."""
    position = torch.arange(length).unsqueeze(1)
    rate = torch.exp(torch.arange(0, dim, 2) * (-math.log(10_000.0) / dim))
    code = torch.zeros(length, dim)
    code[:, 0::2] = torch.sin(position * rate)
    code[:, 1::2] = torch.cos(position * rate)
    return code


class DecoderLayer(nn.Module):
    """Pre-norm: causal self-attention, cross-attention to the image cells, feed-forward; residual around each."""

    def __init__(self, d_model: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, causal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0])
        h = self.norm2(x)
        attended, weights = self.cross_attn(h, memory, memory, need_weights=True, average_attn_weights=False)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.norm3(x))), weights  # weights: (B, heads, T, cells)


class TransformerDecoder(nn.Module):
    """Token + position embeddings -> ``layers`` decoder layers over projected grid features -> logits."""

    def __init__(
        self, vocab_size: int, feature_dim: int, d_model: int, heads: int, layers: int, ff_dim: int, dropout: float,
        max_positions: int = 64,
    ) -> None:  # fmt: skip
        super().__init__()
        self.project = nn.Sequential(nn.Linear(feature_dim, d_model), nn.LayerNorm(d_model))
        self.cell_position = nn.Parameter(torch.zeros(1, 256, d_model))  # learned, one per grid cell
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("positions", sinusoid_positions(max_positions, d_model), persistent=False)
        self.layers = nn.ModuleList(DecoderLayer(d_model, heads, ff_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)
        self.dropout = nn.Dropout(dropout)
        self.scale = d_model**0.5

    def memory(self, features: torch.Tensor) -> torch.Tensor:
        return self.project(features) + self.cell_position[:, : features.shape[1]]

    def decode(self, memory: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, T, V)`` and cross-attention ``(B, layers, heads, T, cells)`` for a token prefix."""
        length = tokens.shape[1]
        x = self.dropout(self.embed(tokens) * self.scale + self.positions[:length])
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), diagonal=1)
        maps = []
        for layer in self.layers:
            x, weights = layer(x, memory, causal)
            maps.append(weights)
        return self.out(self.norm(x)), torch.stack(maps, dim=1)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, maps = self.decode(self.memory(features), tokens)
        return logits, maps.mean(dim=(1, 2))  # (B, T, cells): averaged over layers and heads

    @property
    def static_state(self) -> tuple[str, ...]:
        """Per image, the same for all its beams: beam search never reorders them."""
        return ("memory", *(f"{kv}{i}" for i in range(len(self.layers)) for kv in ("memory_k", "memory_v")))

    def start(self, features: torch.Tensor) -> State:
        """The decoding state: the projected grid, each layer's cross-attention keys and values of it (computed
        once per image), and each layer's self-attention key/value cache, empty so far."""
        memory = self.memory(features)
        state = {"memory": memory}
        for i, layer in enumerate(self.layers):
            attn = layer.cross_attn
            d = attn.embed_dim
            state[f"memory_k{i}"] = _heads(
                F.linear(memory, attn.in_proj_weight[d : 2 * d], attn.in_proj_bias[d : 2 * d]), attn
            )
            state[f"memory_v{i}"] = _heads(
                F.linear(memory, attn.in_proj_weight[2 * d :], attn.in_proj_bias[2 * d :]), attn
            )
            empty = memory.new_zeros(len(memory), attn.num_heads, 0, d // attn.num_heads)
            state[f"self_k{i}"], state[f"self_v{i}"] = empty, empty
        return state

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One word for every hypothesis, attending over the cached keys and values of the words before it (a
        key/value cache: each step costs one position, not the whole prefix). Same numbers as :meth:`decode`."""
        position = state["self_k0"].shape[2]
        x = self.dropout(self.embed(tokens).unsqueeze(1) * self.scale + self.positions[position])
        state, maps = dict(state), []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            q, k, v = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
            state[f"self_k{i}"] = torch.cat([state[f"self_k{i}"], _heads(k, attn)], dim=2)
            state[f"self_v{i}"] = torch.cat([state[f"self_v{i}"], _heads(v, attn)], dim=2)
            attended, _ = _attend(_heads(q, attn), state[f"self_k{i}"], state[f"self_v{i}"], attn)
            x = x + layer.dropout(attended)
            cross = layer.cross_attn
            d = cross.embed_dim
            q = F.linear(layer.norm2(x), cross.in_proj_weight[:d], cross.in_proj_bias[:d])
            attended, weights = _attend(_heads(q, cross), state[f"memory_k{i}"], state[f"memory_v{i}"], cross)
            x = x + layer.dropout(attended)
            x = x + layer.dropout(layer.ff(layer.norm3(x)))
            maps.append(weights[:, :, 0])  # (B, heads, cells)
        logits = self.out(self.norm(x))[:, 0]
        return logits.log_softmax(-1), state, torch.stack(maps, dim=1).mean(dim=(1, 2))

    def step_full_prefix(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State, torch.Tensor]:
        """The same step without a cache, re-running the whole prefix (the reference the cached step is tested
        against; ``state`` from :meth:`start` plus a ``prefix`` entry)."""
        prefix = torch.cat([state.get("prefix", tokens.new_zeros(len(tokens), 0)), tokens.unsqueeze(1)], dim=1)
        logits, maps = self.decode(state["memory"], prefix)
        return logits[:, -1].log_softmax(-1), {**state, "prefix": prefix}, maps[:, :, :, -1].mean(dim=(1, 2))


def _heads(x: torch.Tensor, attn: nn.MultiheadAttention) -> torch.Tensor:
    """``(B, T, d)`` -> ``(B, heads, T, d / heads)``."""
    batch, length, _ = x.shape
    return x.view(batch, length, attn.num_heads, attn.head_dim).transpose(1, 2)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn: nn.MultiheadAttention
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention with ``attn``'s output projection, as ``nn.MultiheadAttention`` computes it:
    ``(B, T, d)`` attended values and ``(B, heads, T, S)`` weights."""
    weights = (q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)).softmax(dim=-1)
    weights = F.dropout(weights, attn.dropout, attn.training)
    out = (weights @ v).transpose(1, 2).reshape(q.shape[0], q.shape[2], attn.embed_dim)
    return attn.out_proj(out), weights


class TransformerCaptioner(CaptionModule):
    """The transformer captioner.

    Args:
        d_model: model width.
        heads: attention heads.
        layers: decoder layers.
        ff_dim: feed-forward width.
        dropout: everywhere.
        **kwargs: see :class:`CaptionModule`.
    """

    def __init__(
        self, d_model: int = 256, heads: int = 4, layers: int = 2, ff_dim: int = 1024, dropout: float = 0.1, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def build_decoder(self, vocab_size: int, feature_dim: int) -> nn.Module:
        hp = self.hparams
        return TransformerDecoder(vocab_size, feature_dim, hp.d_model, hp.heads, hp.layers, hp.ff_dim, hp.dropout)

    def attention_maps(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Per layer and head cross-attention ``(B, layers, heads, T, cells)`` of ``tokens`` (``<start>`` first)."""
        decoder = self.decoder
        return decoder.decode(decoder.memory(features), tokens)[1]
