"""ShowAttendTell (Xu et al., "Show, Attend and Tell", ICML 2015), soft attention.

At every word the LSTM state scores each grid cell (additive attention, Bahdanau et al. 2015), the softmax of
the scores weights the cells into a context vector, a sigmoid gate ``f_beta`` of the state scales it (the
paper's sec. 4.2.1), and the context joins the word embedding as the LSTM input. The doubly stochastic
regulariser ``lambda * mean_cells (1 - sum_t alpha_t)^2`` pushes the model to look at every cell over the caption.
"""

from __future__ import annotations

import torch
from torch import nn

from lit_mc.captioning.decoding import State
from lit_mc.captioning.module import CaptionModule


class AttentionLSTMDecoder(nn.Module):
    """LSTM decoder with soft attention over ``(B, cells, feature_dim)`` grid features."""

    static_state = ("features", "keys")  # per image: beam search never reorders them

    def __init__(
        self, vocab_size: int, feature_dim: int, embed_dim: int, hidden_dim: int, attention_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.att_features = nn.Linear(feature_dim, attention_dim)
        self.att_hidden = nn.Linear(hidden_dim, attention_dim)
        self.att_score = nn.Linear(attention_dim, 1)
        self.f_beta = nn.Linear(hidden_dim, feature_dim)
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def start(self, features: torch.Tensor) -> State:
        pooled = features.mean(dim=1)
        return {
            "h": torch.tanh(self.init_h(pooled)),
            "c": torch.tanh(self.init_c(pooled)),
            "features": features,
            "keys": self.att_features(features),  # the image half of the attention scores, once per caption
        }

    def _advance(self, state: State, embedded: torch.Tensor) -> tuple[State, torch.Tensor]:
        """One LSTM step: the new state (its ``h`` feeds the output layer) and the attention it used."""
        h, c, features, keys = state["h"], state["c"], state["features"], state["keys"]
        scores = self.att_score(torch.tanh(keys + self.att_hidden(h).unsqueeze(1))).squeeze(-1)
        alpha = scores.softmax(dim=-1)
        context = torch.sigmoid(self.f_beta(h)) * torch.bmm(alpha.unsqueeze(1), features).squeeze(1)
        h, c = self.cell(torch.cat([embedded, context], dim=-1), (h, c))
        return {**state, "h": h, "c": c}, alpha

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state, embedded = self.start(features), self.embed(tokens)
        hidden, alphas = [], []
        for t in range(tokens.shape[1]):
            state, alpha = self._advance(state, embedded[:, t])
            hidden.append(state["h"])
            alphas.append(alpha)
        # The output layer once over all steps: one large matrix product instead of T small ones (measured faster).
        return self.out(self.dropout(torch.stack(hidden, dim=1))), torch.stack(alphas, dim=1)

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State, torch.Tensor]:
        state, alpha = self._advance(state, self.embed(tokens))
        return self.out(state["h"]).log_softmax(-1), state, alpha


class ShowAttendTell(CaptionModule):
    """The soft-attention captioner.

    Args:
        embed_dim: word embedding size.
        hidden_dim: LSTM state size.
        attention_dim: size of the additive attention's hidden layer.
        dropout: before the output layer.
        attention_lambda: weight of the doubly stochastic attention regulariser (the paper uses 1).
        **kwargs: see :class:`CaptionModule`.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        hidden_dim: int = 512,
        attention_dim: int = 256,
        dropout: float = 0.5,
        attention_lambda: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def build_decoder(self, vocab_size: int, feature_dim: int) -> nn.Module:
        hp = self.hparams
        return AttentionLSTMDecoder(vocab_size, feature_dim, hp.embed_dim, hp.hidden_dim, hp.attention_dim, hp.dropout)

    def extra_loss(self, attention: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
        if not self.hparams.attention_lambda or attention is None:
            return None
        total = (attention * mask.unsqueeze(-1)).sum(dim=1)  # (B, cells): attention each cell got over the caption
        return (
            self.hparams.attention_lambda * ((1.0 - total) ** 2).mean()
        )  # mean over cells, as most re-implementations
