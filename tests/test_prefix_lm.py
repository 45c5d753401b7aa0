"""The prefix-LM captioner on a tiny randomly initialised Llama (no download, seconds): prefix shapes, the loss masks
of prefix and padding, generate() against step-by-step greedy decoding, and the checkpoint's round trip and refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import QUIET, REPO
from lit_mc.captioning import PrefixLMCaptioner
from lit_mc.captioning.vocab import SPECIALS, Vocabulary
from lit_mc.cli import main

VOCAB = Vocabulary(SPECIALS + ("a", "dog", "runs", "cat", "sits", "on", "grass"))


def _module(**kwargs) -> PrefixLMCaptioner:  # noqa: ANN003
    torch.manual_seed(0)
    module = PrefixLMCaptioner(lm="tiny-random", prefix_length=3, mapper_width=16, max_length=6, **kwargs)
    module._build(VOCAB, feature_dim=8)
    return module.eval()


def _captions(*texts: str) -> torch.Tensor:
    return VOCAB.encode_batch([t.split() for t in texts], 6)


def test_prefix_shapes_and_what_trains() -> None:
    module = _module(prompt="a")
    features = torch.randn(2, 5, 8)
    assert module.decoder(features).shape == (2, 3, module._embeddings().embedding_dim)
    assert module._prefix(features).shape[1] == 4  # 3 prefix embeddings + the prompt's one token
    trained = module.trained_parameter_names()
    assert trained and all(name.startswith("decoder.") for name in trained)  # the LM is frozen
    mlp = _module(mapper="mlp")
    assert mlp.decoder(features).shape == (2, 3, mlp._embeddings().embedding_dim)


def test_loss_counts_only_caption_tokens() -> None:
    """The LM's loss equals the cross-entropy of each caption token (and its eos) predicted from the position
    before it, the prefix positions and the padding of the shorter caption left out."""
    module = _module()
    features = torch.randn(2, 5, 8)
    captions = _captions("a dog runs on grass", "a cat")
    loss, _ = module.teacher_forced_loss(features, captions)
    ids, mask = module.caption_ids(["a dog runs on grass", "a cat"])
    prefix = module._prefix(features)
    embeds = torch.cat([prefix, module._embeddings()(ids)], dim=1)
    attention = torch.cat([torch.ones(2, 3, dtype=mask.dtype), mask], dim=1)
    logits = module.lm(inputs_embeds=embeds, attention_mask=attention).logits
    predicted = logits[:, 2:-1]  # position 2 (last prefix) predicts the first caption token, and so on
    keep = mask.bool()
    manual = F.cross_entropy(predicted[keep], ids[keep])
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert int(mask.sum()) == 6 + 3  # five words + eos, two words + eos: padding excluded


def test_generate_after_the_prefix_equals_step_by_step_greedy_decoding() -> None:
    module = _module()
    features = torch.randn(3, 5, 8)
    with torch.no_grad():
        prefix = module._prefix(features)
        embeds, tokens = prefix, []
        for _ in range(module.hparams.max_length):
            nxt = module.lm(inputs_embeds=embeds).logits[:, -1].argmax(dim=-1)
            tokens.append(nxt)
            embeds = torch.cat([embeds, module._embeddings()(nxt)[:, None]], dim=1)
    eos = module.tokenizer.eos_token_id
    manual = []
    for row in torch.stack(tokens, dim=1).tolist():
        row = row[: row.index(eos)] if eos in row else row
        manual.append(" ".join(module.tokenizer.decode(row, skip_special_tokens=True).split()))
    assert module.captions(features, beam_size=1) == manual


def test_checkpoint_holds_the_mapper_and_refuses_another_language_model(
    tmp_path: Path, in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    from lit_mc.captioning.toy import write_toy_set

    toy = write_toy_set(tmp_path / "toy", train=16, val=4, test=4, size=32)
    args = ["fit", "--config", str(REPO / "configs" / "flickr8k" / "prefix_lm.yaml"), f"--data.data_dir={toy}",
            "--data.encoder.backbone=patches", "--data.encoder.weights=null", "--data.encoder.image_size=32",
            "--data.encoder.patch_size=8", "--data.batch_size=8", "--data.eval_batch_size=4", "--trainer.max_epochs=1",
            "--model.init_args.lm=tiny-random", "--model.init_args.mapper_width=16", "--model.init_args.warmup_steps=0",
            "--model.init_args.test_beam_sizes=[1, 2]", *QUIET]  # fmt: skip
    main(args)
    run = in_tmp / "lightning_logs" / "version_0"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert set(metrics) == {"beam1", "beam2"} and "cider" in metrics["beam1"]
    ckpt = next((run / "checkpoints").glob("best-*.ckpt"))
    saved = torch.load(ckpt, weights_only=True)
    assert saved["state_dict"] and not any(k.startswith("lm.") for k in saved["state_dict"])  # the frozen LM stays out
    assert saved["lit_mc"]["lm"].startswith("tiny-random")
    main(["test", "--ckpt_path", str(ckpt), f"--data.data_dir={toy}", *QUIET])  # rebuilt from the checkpoint alone
    saved["lit_mc"]["lm"] = "SmolLM2-135M-Instruct.Q4_1.gguf:0123"
    other = in_tmp / "other.ckpt"
    torch.save(saved, other)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--ckpt_path", str(other), f"--data.data_dir={toy}", *QUIET])
    assert exit_info.value.code == 2
    (line,) = [e for e in capsys.readouterr().err.splitlines() if e.startswith("lit-mc: error:")]
    assert "trained on the language model SmolLM2" in line and "Fix: " in line


def test_attention_maps_of_a_prefix_lm_show_where_its_prefix_reads(tmp_path: Path) -> None:
    """The AttentionMaps callback ran the from-scratch beam search over the mapping network and crashed; a prefix
    LM now gets one panel per prefix position under its LM-written caption (and none with the ``mlp`` mapper)."""
    from types import SimpleNamespace

    from lit_mc.captioning.attention import write_attention_maps

    data = SimpleNamespace(grid=(2, 2), image=lambda row: torch.full((3, 8, 8), 100, dtype=torch.uint8))
    batch = {"features": torch.randn(2, 4, 8), "rows": torch.tensor([3, 7])}
    written = write_attention_maps(_module(), data, batch, tmp_path)
    assert [m.path.name for m in written] == ["row=3.png", "row=7.png"] and all(m.path.is_file() for m in written)
    assert [ax.get_title() for ax in written[0].figure.axes[1:4]] == ["prefix 1", "prefix 2", "prefix 3"]
    assert write_attention_maps(_module(mapper="mlp"), data, batch, tmp_path / "mlp") == []
