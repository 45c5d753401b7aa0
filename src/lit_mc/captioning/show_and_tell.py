"""ShowAndTell (Vinyals et al., "Show and Tell: A Neural Image Caption Generator", CVPR 2015): the baseline
without attention. The grid is averaged into one image vector that sets the LSTM's initial state; after that
the decoder never looks at the image again, which is what attention changes.
"""

from __future__ import annotations

import torch
from torch import nn

from lit_mc.captioning.decoding import State
from lit_mc.captioning.module import CaptionModule


class LSTMDecoder(nn.Module):
    """Word embedding -> one LSTM layer -> dropout -> vocabulary logits, started from the pooled image."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def _initial(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = features.mean(dim=1)
        return torch.tanh(self.init_h(pooled)), torch.tanh(self.init_c(pooled))

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, c = self._initial(features)
        hidden, _ = self.lstm(self.embed(tokens), (h.unsqueeze(0), c.unsqueeze(0)))
        return self.out(self.dropout(hidden)), None

    def start(self, features: torch.Tensor) -> State:
        h, c = self._initial(features)
        return {"h": h, "c": c}

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State, None]:
        hidden, (h, c) = self.lstm(self.embed(tokens).unsqueeze(1), (state["h"].unsqueeze(0), state["c"].unsqueeze(0)))
        logits = self.out(hidden[:, 0])
        return logits.log_softmax(-1), {"h": h[0], "c": c[0]}, None


class ShowAndTell(CaptionModule):
    """The no-attention baseline captioner.

    Args:
        embed_dim: word embedding size.
        hidden_dim: LSTM state size.
        dropout: before the output layer.
        **kwargs: see :class:`CaptionModule` (learning rate, decoding, ...).
    """

    def __init__(self, embed_dim: int = 256, hidden_dim: int = 512, dropout: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def build_decoder(self, vocab_size: int, feature_dim: int) -> nn.Module:
        hp = self.hparams
        return LSTMDecoder(vocab_size, feature_dim, hp.embed_dim, hp.hidden_dim, hp.dropout)
