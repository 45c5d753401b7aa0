"""The captioners' training recipe and decoding speed-ups: the transformer's key/value cache, the learning-rate
schedules and label smoothing, each against its definition."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from lit_mc.captioning import ShowAndTell
from lit_mc.captioning.module import lr_factor
from lit_mc.errors import LitMcError
from test_captioning import CONFIGS, TINY, tiny_captioner, toy_args


def test_key_value_cached_step_equals_the_full_prefix_step() -> None:
    """Word by word over a random caption, the cached step's log-probabilities and attention are those of
    re-running the whole prefix, for a batch of images; and beam search over both gives the same captions."""
    decoder = tiny_captioner("transformer", max_length=6, length_penalty=0.0).decoder
    torch.manual_seed(1)
    features = torch.randn(3, 4, 6)
    words = torch.randint(4, len(TINY), (3, 6))
    cached, full = decoder.start(features), decoder.start(features)
    tokens = torch.full((3,), TINY.start)
    with torch.no_grad():
        for t in range(6):
            a, cached, att_a = decoder.step(cached, tokens)
            b, full, att_b = decoder.step_full_prefix(full, tokens)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(att_a, att_b, rtol=1e-5, atol=1e-6)
            tokens = words[:, t]
    assert cached["self_k0"].shape[2] == 6  # one cached position per word read

    from lit_mc.captioning.decoding import beam_search

    fast = beam_search(decoder, features, TINY.start, TINY.end, TINY.pad, beam_size=3, max_length=6)

    class FullPrefix(torch.nn.Module):
        static_state = ("memory",)

        def start(self, f: torch.Tensor) -> dict:
            return {"memory": decoder.memory(f)}

        def step(self, state: dict, tok: torch.Tensor) -> tuple:
            return decoder.step_full_prefix(state, tok)

    slow = beam_search(FullPrefix(), features, TINY.start, TINY.end, TINY.pad, beam_size=3, max_length=6)
    assert torch.equal(fast.tokens, slow.tokens)
    torch.testing.assert_close(fast.scores, slow.scores)


def test_learning_rate_schedules() -> None:
    warm = lr_factor("constant", 4, 100)
    assert [warm(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]  # linear warm-up, then flat
    inverse = lr_factor("inverse_sqrt", 4, 100)
    assert inverse(3) == 1.0 and inverse(15) == pytest.approx(math.sqrt(4 / 16))  # step 16: sqrt(warmup / step)
    cosine = lr_factor("cosine", 0, 10)
    assert cosine(0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1))) and cosine(9) == pytest.approx(0.0)
    assert cosine(4) == pytest.approx(0.5)  # half way: half the rate


def test_label_smoothing_trains_on_smoothed_targets_and_reports_plain_cross_entropy() -> None:
    module = tiny_captioner("show_and_tell", max_length=5, length_penalty=0.0)
    module.hparams.label_smoothing = 0.1
    torch.manual_seed(2)
    features = torch.randn(2, 4, 6)
    captions = torch.tensor([[TINY.start, 4, 5, TINY.end, TINY.pad], [TINY.start, 5, 4, 4, TINY.end]])
    module.train()
    torch.manual_seed(3)  # the same dropout masks in both forward passes
    ce, loss = module.teacher_forced_loss(features, captions)
    torch.manual_seed(3)
    logits, _ = module.decoder(features, captions[:, :-1])
    targets = captions[:, 1:]
    keep = targets != TINY.pad
    log_p = logits.log_softmax(-1)[keep]
    nll = -log_p.gather(1, targets[keep].unsqueeze(1)).squeeze(1)
    smooth = 0.9 * nll - 0.1 * log_p.mean(dim=1)  # (1 - e) * NLL + e * mean over the vocabulary of -log p
    torch.testing.assert_close(loss, smooth.mean())
    torch.testing.assert_close(ce, nll.mean())
    module.eval()
    ce_eval, loss_eval = module.teacher_forced_loss(features, captions)
    torch.testing.assert_close(ce_eval, loss_eval)  # no smoothing outside training


def test_paired_bootstrap_against_its_exact_distribution() -> None:
    """Two items with differences 0 and 2: a resample's mean is 0, 1 or 2 with probabilities 1/4, 1/2, 1/4, so the
    95% percentile interval is [0, 2] and the two-sided p-value is 2 * P(mean <= 0) = 0.5."""
    from lit_mc.studies.stats import paired_bootstrap

    result = paired_bootstrap([0.5, 2.5], [0.5, 0.5], resamples=20_000, seed=1)
    assert result["mean"] == 1.0 and (result["ci_low"], result["ci_high"]) == (0.0, 2.0)
    assert result["p"] == pytest.approx(0.5, abs=0.03)
    sure = paired_bootstrap([1.0, 3.0, 2.0], [0.0, 0.0, 0.0], resamples=2_000)
    assert sure["p"] == 0.0 and 1.0 <= sure["ci_low"] <= sure["ci_high"] <= 3.0
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_per_image_scores_and_diversity_by_hand() -> None:
    from lit_mc.captioning.metrics import caption_diversity, coco_scores, per_image_scores

    hyps = ["a dog runs on the grass", "a man rides a bike", "a dog a dog a dog"]
    refs = [["a dog runs on the grass", "a brown dog runs"], ["a man is riding a bicycle", "a person on a bike"],
            ["two children play in the water", "kids splash in a pool"]]  # fmt: skip
    scores = per_image_scores(hyps, refs)
    assert scores["bleu4"][0] == pytest.approx(1.0)  # identical to a reference
    assert sum(scores["cider"]) / 3 == pytest.approx(coco_scores(hyps, refs, meteor=False)["cider"])
    assert scores["cider"][2] == pytest.approx(0.0)  # no n-gram in common with its references
    stats = caption_diversity(hyps + [hyps[0]], training_captions=["a man rides a bike"])
    assert stats["distinct_share"] == 0.75 and stats["copied_from_training_share"] == 0.25
    assert stats["repeated_bigram_share"] == 0.25  # "a dog" three times
    assert stats["vocabulary_used"] == 9 and stats["unk_word_share"] == 0.0


def test_paired_comparison_table_from_per_image_files(tmp_path) -> None:  # noqa: ANN001
    from lit_mc.report import paired_comparison_markdown

    for model, shift in (("base", 0.0), ("better", 0.2)):
        folder = tmp_path / "flickr8k" / model
        folder.mkdir(parents=True)
        rows = [f"{i},img{i}.jpg,a caption,{0.5 + shift + 0.01 * i:.6f},{0.2 + shift / 2:.6f}" for i in range(30)]
        (folder / "per_image.csv").write_text("row,image,caption,cider,bleu4\n" + "\n".join(rows) + "\n")
    table = paired_comparison_markdown(["better"], against="base", root=tmp_path)
    assert "| better | 30 | +20.0 [+20.0, +20.0] | < 0.0002 | +10.0 [+10.0, +10.0] | < 0.0002 |" in table


def test_a_model_with_seeds_is_compared_by_each_images_mean_over_its_seeds(tmp_path) -> None:  # noqa: ANN001
    from lit_mc.report import read_per_image

    for seed, cider in ((0, 0.4), (1, 0.6)):
        folder = tmp_path / "flickr8k" / "model" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "examples.json").write_text("{}")
        rows = [f"{i},img{i}.jpg,a caption,{cider + i:.6f},0.2" for i in range(3)]
        (folder / "per_image.csv").write_text("row,image,caption,cider,bleu4\n" + "\n".join(rows) + "\n")
    assert read_per_image("model", tmp_path)["img2.jpg"] == pytest.approx({"cider": 2.5, "bleu4": 0.2})
    assert read_per_image("model/seed1", tmp_path)["img0.jpg"]["cider"] == pytest.approx(0.6)


def test_an_scst_run_is_compared_with_the_seed_it_started_from(tmp_path) -> None:  # noqa: ANN001
    from lit_mc.report import scst_comparison_markdown

    for folder, shift in (("show_and_tell/seed0", 0.3), ("show_and_tell/seed1", 0.0), ("show_and_tell_scst", 0.1)):
        run = tmp_path / "flickr8k" / folder
        run.mkdir(parents=True)
        (run / "examples.json").write_text("{}")
        rows = [f"{i},img{i}.jpg,a caption,{0.5 + shift + 0.01 * i:.6f},{0.2 + shift / 2:.6f}" for i in range(30)]
        (run / "per_image.csv").write_text("row,image,caption,cider,bleu4\n" + "\n".join(rows) + "\n")
    start = "lightning_logs/flickr8k_show_and_tell_s1/version_0/checkpoints/best-epoch=09-val_cider=0.4204.ckpt"
    (tmp_path / "flickr8k/show_and_tell_scst/config.yaml").write_text(f"model:\n  init_args:\n    init_from: {start}\n")
    table = scst_comparison_markdown(tmp_path)
    assert "| show_and_tell_scst | show_and_tell/seed1 | 64.5 -> 74.5 | +10.0 [+10.0, +10.0] | 20.0 -> 25.0 |" in table


def test_cider_d_with_fixed_document_frequencies_equals_pycocoevalcap_on_its_own_corpus() -> None:
    from pycocoevalcap.cider.cider import Cider

    from lit_mc.captioning.reward import CiderD

    hyps = ["a dog runs on the grass", "a man rides a bike", "two dogs play", "a child in the water"]
    refs = [
        ["a dog runs on the grass", "a brown dog runs"],
        ["a man is riding a bicycle", "a person on a bike"],
        ["two dogs play in the snow", "dogs playing"],
        ["a child swims in the water", "kids in a pool"],
    ]
    ours = CiderD(refs).scores(hyps, refs)
    theirs = Cider().compute_score({i: r for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)})[1]
    assert ours == pytest.approx([float(x) for x in theirs], rel=1e-9)
    fixed = CiderD(refs + [["a dog"]] * 20)  # another corpus: "a dog" is common there, so worth less
    assert fixed.score(hyps[0], refs[0]) != pytest.approx(ours[0])


class _ScriptedSampler(torch.nn.Module):
    """Greedy picks "a <end>"; sampling draws "b <end>" or "a <end>" as the probabilities say (see ScriptedDecoder
    in test_captioning): after <start>, "a" 0.6 and "b" 0.4; after either, <end>."""

    def __init__(self) -> None:
        super().__init__()
        self.logit = torch.nn.Parameter(torch.tensor([0.6, 0.4]).log())

    def start(self, features: torch.Tensor) -> dict:
        return {"features": features}

    def step(self, state: dict, tokens: torch.Tensor) -> tuple:
        rows = []
        for t in tokens.tolist():
            if t == TINY.start:
                rows.append(torch.cat([torch.full((4,), -30.0), self.logit]))
            else:
                rows.append(torch.tensor([-30.0, -30.0, 0.0, -30.0, -30.0, -30.0]))
        return torch.stack(rows).log_softmax(-1), state, None


def test_self_critical_reward_baseline_and_gradient_on_a_scripted_decoder() -> None:
    """References say "b": a sampled "b" earns CIDEr-D above the greedy "a" (advantage > 0) and a sampled "a"
    earns exactly the greedy caption's (advantage 0), so the gradient raises the log-probability of "b" only."""
    from lit_mc.captioning import ShowAndTell
    from lit_mc.captioning.reward import CiderD

    module = ShowAndTell(embed_dim=4, hidden_dim=4, scst=64, max_length=3)
    module._build(TINY, feature_dim=2)
    module.decoder = _ScriptedSampler()
    refs = [["b", "b"]]
    module.cider_reward = CiderD(refs + [["a b"], ["a"]])
    torch.manual_seed(0)
    loss, rewards = module.self_critical_loss(torch.zeros(1, 1, 2), refs)
    b_reward = module.cider_reward.score("b", refs[0])
    assert rewards["greedy_reward"] == pytest.approx(module.cider_reward.score("a", refs[0])) == 0.0
    assert 0 < rewards["reward"] < b_reward and b_reward > 0  # a mix of "b" (rewarded) and "a" (not) samples
    loss.backward()
    grad = module.decoder.logit.grad
    assert grad[1] < 0 < grad[0]  # descending the loss raises the logit of "b" and lowers that of "a"


def test_self_critical_mean_baseline_is_the_other_samples_mean() -> None:
    """``scst_baseline: mean``: each sample's advantage is its reward minus the mean of the image's other samples,
    so the advantages of an image sum to zero, and the loss is the per-word mean of -advantage * log p."""
    from lit_mc.captioning import ShowAndTell
    from lit_mc.captioning.reward import CiderD

    module = ShowAndTell(embed_dim=4, hidden_dim=4, scst=8, max_length=3, scst_baseline="mean")
    module._build(TINY, feature_dim=2)
    module.decoder = _ScriptedSampler()
    refs = [["b", "b"]]
    module.cider_reward = CiderD(refs + [["a b"], ["a"]])
    seen = {}
    original = module.cider_reward.scores

    def recording(hypotheses, references):  # noqa: ANN001, ANN202
        out = original(hypotheses, references)
        seen.setdefault("samples", out)  # the first call scores the samples
        return out

    module.cider_reward.scores = recording
    torch.manual_seed(0)
    loss, _ = module.self_critical_loss(torch.zeros(1, 1, 2), refs)
    r = torch.tensor(seen["samples"])
    advantage = r - (r.sum() - r) / (len(r) - 1)
    assert 0 < (r > 0).sum() < len(r) and advantage.sum().abs() < 1e-6  # a mix, and zero-mean advantages
    loss.backward()
    assert module.decoder.logit.grad[1] < 0 < module.decoder.logit.grad[0]  # "b" raised, "a" lowered, as with greedy
    with pytest.raises(LitMcError, match="scst"):
        ShowAndTell(scst=1, scst_baseline="mean")


def test_self_critical_fine_tuning_through_lit_mc_fit(tmp_path, in_tmp) -> None:  # noqa: ANN001
    """Cross-entropy first, then `lit-mc fit` with the SCST overlay from that checkpoint: the rewards are logged,
    the weights start from the checkpoint and move."""
    import csv

    from lit_mc.captioning.toy import write_toy_set
    from lit_mc.checkpoints import read_checkpoint
    from lit_mc.cli import main

    toy = write_toy_set(tmp_path / "toy", train=24, val=4, test=4, size=32)
    small = ["--model.init_args.embed_dim=16", "--model.init_args.hidden_dim=32"]
    main([*toy_args(toy, "show_and_tell"), *small])
    xe = in_tmp / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    scst = [*toy_args(toy, "show_and_tell"), *small, "--config", str(CONFIGS / "scst.yaml"), "--data.batch_size=4",
            f"--model.init_args.init_from={xe}", "--model.init_args.scst=2"]  # fmt: skip
    main(scst)
    run = in_tmp / "lightning_logs" / "version_1"
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("train_reward_epoch") or r.get("train_reward") for r in rows)
    before = read_checkpoint(xe)["state_dict"]
    after = read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert before.keys() == after.keys()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and len(moved) < len(before) + 1


def test_decoding_is_chosen_on_the_validation_split(tmp_path, in_tmp) -> None:  # noqa: ANN001
    from lit_mc.captioning.toy import write_toy_set
    from lit_mc.cli import main
    from lit_mc.report.caption_runs import best_checkpoint, choose_decoding

    toy = write_toy_set(tmp_path / "toy", train=24, val=4, test=4, size=32)
    main([*toy_args(toy, "show_and_tell"), "--model.init_args.embed_dim=16", "--model.init_args.hidden_dim=32"])
    chosen = choose_decoding(best_checkpoint(in_tmp / "lightning_logs" / "version_0"), toy, beams=(1, 2),
                             penalties=(0.0, 1.0))  # fmt: skip
    assert [(r["beam_size"], r["length_penalty"]) for r in chosen["grid"]] == [(1, 0.0), (2, 0.0), (2, 1.0)]
    assert chosen["best"]["val_cider"] == max(r["val_cider"] for r in chosen["grid"])


def test_evaluation_without_the_loss_scores_the_same_captions(tmp_path, in_tmp) -> None:  # noqa: ANN001
    """``eval_loss=false`` (what decoding choices run with) drops the teacher-forced loss and nothing else; and a
    run fitted on the first validation images (``val_images``) is scored on all of them once that is unset."""
    from lit_mc.captioning.toy import write_toy_set
    from lit_mc.checkpoints import model_and_data_args
    from lit_mc.cli import main
    from lit_mc.report.caption_runs import best_checkpoint
    from lit_mc.runner import run_lightning_cli

    toy = write_toy_set(tmp_path / "toy", train=24, val=6, test=4, size=32)
    main([*toy_args(toy, "show_and_tell"), "--model.init_args.embed_dim=16", "--model.init_args.hidden_dim=32",
          "--data.val_images=2"])  # fmt: skip
    ckpt = best_checkpoint(in_tmp / "lightning_logs" / "version_0")
    scores, images = [], []
    for extra in ([], ["--model.init_args.eval_loss=false", "--data.init_args.val_images=null"]):
        cli = run_lightning_cli([*model_and_data_args(str(ckpt)), f"--data.init_args.data_dir={toy}",
                                 "--trainer.logger=false", *extra], run=False)  # fmt: skip
        scores.append(cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt), verbose=False)[0])
        images.append(sum(len(rows) for rows, _ in cli.datamodule.val_dataloader()))
    assert "val_loss" in scores[0] and "val_loss" not in scores[1] and "val_cider" in scores[1]
    assert images == [2, 6]


def test_the_test_split_is_decoded_with_the_chosen_settings_and_analysed(tmp_path, in_tmp) -> None:  # noqa: ANN001
    """``--choose-decoding``'s second half: the test split decoded at the chosen beam and penalty into the results
    folder, then analysed at that beam (per-image scores, diversity, CIDEr by reference length, size)."""
    from lit_mc.captioning.toy import write_toy_set
    from lit_mc.cli import main
    from lit_mc.report.caption_runs import analyse_run, best_checkpoint, test_with_decoding

    toy = write_toy_set(tmp_path / "toy", train=24, val=4, test=6, size=32)
    main([*toy_args(toy, "show_and_tell"), "--model.init_args.embed_dim=16", "--model.init_args.hidden_dim=32"])
    run = in_tmp / "lightning_logs" / "version_0"
    out = tmp_path / "results" / "show_and_tell" / "seed0"
    scores = test_with_decoding(best_checkpoint(run), toy, beam=2, penalty=1.0, out=out)
    assert set(scores) == {"beam2"}
    with (out / "captions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {r["beam_size"] for r in rows} == {"2"}
    summary = analyse_run(run, toy, out, examples=1, beam=2, tested_here=True)
    assert summary["beam"] == 2 and (out / "per_image.csv").read_text().count("\n") == 1 + 6
    assert 0 < summary["training_wall_minutes"] < 5  # from the run's start to its last checkpoint
    assert json.loads((out / "test_metrics.json").read_text()) == scores  # the run's own beam-1 file not copied over
    diversity = summary["diversity"]
    assert diversity["captions"] == 6 and 0 < diversity["distinct_share"] <= 1
    assert diversity["mean_length"] == pytest.approx(sum(len(r["caption"].split()) for r in rows) / 6)
    groups = summary["cider_by_reference_length"]
    assert sum(g["images"] for g in groups) == 6
    assert [g["min_words"] for g in groups] == sorted(g["min_words"] for g in groups)
    assert sum(g["mean_cider"] * g["images"] for g in groups) / 6 == pytest.approx(summary["mean_cider"])
    module = ShowAndTell.load_from_checkpoint(best_checkpoint(run), map_location="cpu", weights_only=True)
    size = summary["size"]
    assert size["params"] == sum(p.numel() for p in module.parameters()) == size["trained_params"]
    assert size["mflops_per_caption"] > 0


def test_cider_by_reference_length_groups_images_by_their_references() -> None:
    from lit_mc.report.caption_runs import cider_by_reference_length

    refs = [["a b", "a b c d"], ["a"], ["a b c d e f"], ["a b c", "a b c"]]  # mean lengths 3, 1, 6, 3
    groups = cider_by_reference_length(refs, [0.3, 0.1, 0.6, 0.4], bins=2)
    assert [(g["min_words"], g["max_words"], g["images"]) for g in groups] == [(1, 3, 2), (3, 6, 2)]
    assert [g["mean_cider"] for g in groups] == pytest.approx([0.2, 0.5])


def test_the_recipe_search_changes_one_setting_of_the_best_row_at_a_time() -> None:
    from lit_mc.campaigns.flickr8k import CHANGES, FIRST_ROWS, best_recipe_row, next_recipe_row

    rows: dict = {}
    assert next_recipe_row(rows) == ("r0", {})
    rows["r0"] = {"overrides": {}, "best_val_cider": 0.50}  # the shipped recipe: a reference, never built upon
    rows["r1"] = {"overrides": FIRST_ROWS["r1"], "best_val_cider": 0.45}
    assert next_recipe_row(rows) == ("r2", FIRST_ROWS["r2"])
    rows["r2"] = {"overrides": FIRST_ROWS["r2"], "best_val_cider": 0.47}
    tag, r3 = next_recipe_row(rows)
    assert tag == "r3" and r3 == {**FIRST_ROWS["r2"], **CHANGES[0][1]}  # cosine won r1 / r2: dropout tried on it
    rows["r3"] = {"overrides": r3, "best_val_cider": 0.44}  # worse: r4 builds on r2 again
    assert next_recipe_row(rows) == ("r4", {**FIRST_ROWS["r2"], **CHANGES[1][1]})
    assert best_recipe_row(rows) == "r0"  # if nothing beats the shipped recipe, the search says so
    for tag, change in CHANGES[1:]:
        rows[tag] = {"overrides": change, "best_val_cider": 0.4}
    assert next_recipe_row(rows) is None


def test_the_campaign_runs_jobs_in_dependency_order_and_starts_none_after_its_stop(tmp_path: Path) -> None:
    import datetime as dt
    import sys

    from lit_mc.campaigns.flickr8k import Campaign, Job, run

    done: set[str] = set()

    def job(name: str, code: int = 0, needs: tuple = ()) -> Job:
        marker = tmp_path / name
        command = [
            sys.executable,
            "-c",
            f"import pathlib, sys; pathlib.Path({str(marker)!r}).touch(); sys.exit({code})",
        ]
        return Job(name, lambda: [command], marker.is_file, needs, after=lambda: done.add(name))

    jobs = [job("b", needs=("a",)), job("a"), job("bad", code=3), job("c", needs=("bad",))]
    report = run(Campaign(logs=tmp_path), jobs, workers=2, stop_at=None, logs=tmp_path / "logs")
    assert report.index("a: done") < report.index("b: done") and done == {"a", "b"}  # after(): only on success
    assert any(r.startswith("bad: failed (exit 3") for r in report) and "c: not started (needs failed bad)" in report
    late = run(Campaign(logs=tmp_path), [job("d")], 2, dt.datetime.now() - dt.timedelta(minutes=1), tmp_path / "l")
    assert late == ["d: not started (--stop-at)"] and not (tmp_path / "d").exists()


def test_the_transformer_seeds_take_the_best_row_but_the_size_row_and_its_epochs(tmp_path: Path) -> None:
    """r7 (width / depth) is a check run after the seeds: they neither wait for it nor take its settings."""
    from lit_mc.campaigns.flickr8k import CHANGES, FIRST_ROWS, RECIPE_EPOCHS, Campaign, all_jobs

    recipe = tmp_path / "flickr8k" / "recipe"
    recipe.mkdir(parents=True)
    rows = {**FIRST_ROWS, **dict(CHANGES)}
    for i, (tag, overrides) in enumerate(rows.items()):  # r7 best of all, then r6
        (recipe / f"{tag}.json").write_text(json.dumps({"tag": tag, "overrides": overrides, "best_val_cider": i}))
    camp = Campaign(results=tmp_path / "flickr8k", logs=tmp_path / "logs")
    jobs = {j.name: j for j in all_jobs(camp)}
    assert "recipe r7" not in jobs["transformer seed 0"].needs and "recipe r6" in jobs["transformer seed 0"].needs
    assert list(jobs)[-1] == "recipe r7"  # started after everything else
    fit = jobs["transformer seed 0"].command()[0]
    assert "--model.init_args.weight_decay=0.0" in fit and "--model.init_args.d_model=512" not in fit  # r6's
    assert f"--trainer.max_epochs={RECIPE_EPOCHS}" in fit
    assert not any(a.startswith("--trainer.max_epochs") for a in jobs["show_and_tell seed 0"].command()[0])


def test_only_keeps_the_done_jobs_a_selected_job_needs(tmp_path: Path) -> None:
    """``--only scst`` after the seeds ran in an earlier session: the seeds count as done, not as missing."""
    from lit_mc.campaigns.flickr8k import Campaign, Job, run, select_jobs

    seed_done = tmp_path / "seed"
    seed_done.touch()
    command = [sys.executable, "-c", f"import pathlib; pathlib.Path({str(tmp_path / 'scst')!r}).touch()"]
    jobs = [Job("seed", lambda: [], seed_done.is_file, group="xe"), Job("other", lambda: [], lambda: False, group="xe"),
            Job("scst", lambda: [command], (tmp_path / "scst").is_file, ("seed",), group="scst")]  # fmt: skip
    chosen = select_jobs(jobs, "scst")
    assert [j.name for j in chosen] == ["seed", "scst"]  # "other" is neither selected nor done
    assert run(Campaign(logs=tmp_path), chosen, 1, None, tmp_path / "logs") == ["seed: done before", "scst: done"]
    alone = run(Campaign(logs=tmp_path), [jobs[2]], 1, None, tmp_path / "logs")
    assert alone == ["scst: done before"]
    lonely = Job("scst2", lambda: [command], lambda: False, ("other",), group="scst")
    assert run(Campaign(logs=tmp_path), [lonely], 1, None, tmp_path / "l") == [
        "scst2: not started (needs other: not done and not selected)"
    ]


def test_a_job_another_campaign_process_runs_is_left_to_it_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    import os
    import subprocess

    from lit_mc.campaigns.flickr8k import Campaign, Job, run

    logs = tmp_path / "logs"
    logs.mkdir()
    marker = tmp_path / "a"
    command = [sys.executable, "-c", f"import pathlib; pathlib.Path({str(marker)!r}).touch()"]
    a = Job("a", lambda: [command], marker.is_file)
    b = Job("b", lambda: [], lambda: False, ("a",))
    (logs / "a.lock").write_text(str(os.getppid()))  # a live process that is not this one holds it
    report = run(Campaign(logs=tmp_path), [a, b], 2, None, logs)
    assert report == [f"a: not started (running in campaign process {os.getppid()})",
                      "b: not started (needs a: running in another campaign process)"]  # fmt: skip
    assert not marker.exists()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (logs / "a.lock").write_text(str(gone.pid))  # its process has ended
    assert run(Campaign(logs=tmp_path), [a], 1, None, logs) == ["a: done"] and marker.exists()
    assert not (logs / "a.lock").exists()


def test_a_campaign_fit_command_is_a_valid_lit_mc_fit(tmp_path: Path) -> None:
    import subprocess

    from lit_mc.campaigns.flickr8k import FIRST_ROWS, Campaign, _model_args, fit_command

    command = fit_command(Campaign(repo=REPO, logs=tmp_path), "transformer", "transformer_r1",
                          _model_args(FIRST_ROWS["r1"]))  # fmt: skip
    assert "--ckpt_path=last" not in command  # nothing to continue yet
    printed = subprocess.run([*command, "--print_config"], capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert "schedule: inverse_sqrt" in printed.stdout and f"save_dir: {tmp_path}" in printed.stdout


def test_stop_at_is_the_next_such_clock_time() -> None:
    """A session that starts at 22:00 and says --stop-at 00:20 means after midnight, not a time already past."""
    from lit_mc.clock import next_clock_time, stop_time

    evening = dt.datetime(2026, 12, 4, 22, 0)
    assert next_clock_time(evening, 0, 20) == dt.datetime(2026, 12, 5, 0, 20)
    assert next_clock_time(evening, 23, 5) == dt.datetime(2026, 12, 4, 23, 5)
    assert stop_time("0:20", now=evening) == dt.datetime(2026, 12, 5, 0, 20)
    from lit_mc.errors import LitMcError

    for bad in ("21.10", "25:00", "21:60", "soon"):
        with pytest.raises(LitMcError, match="is not a clock time"):
            stop_time(bad, now=evening)


def test_recipe_table_reads_each_rows_best_epoch_and_its_validation_loss_rise(tmp_path: Path) -> None:
    from lit_mc.report import transformer_recipe_figure, transformer_recipe_markdown

    folder = tmp_path / "flickr8k" / "recipe"
    folder.mkdir(parents=True)
    curves = {"r0": [(0.40, 2.50), (0.45, 2.40), (0.44, 2.46)], "r1": [(0.38, 2.60), (0.47, 2.50), (0.50, 2.45)]}
    for tag, curve in curves.items():
        row = {"tag": tag, "overrides": {} if tag == "r0" else {"schedule": "cosine"}, "epochs": 3,
               "curve": [{"epoch": e + 1, "val_cider": c, "val_loss": v} for e, (c, v) in enumerate(curve)],
               "best_val_cider": max(c for c, _ in curve),
               "best_epoch": 1 + max(range(3), key=lambda i: curve[i][0])}  # fmt: skip
        (folder / f"{tag}.json").write_text(json.dumps(row))
    lines = transformer_recipe_markdown(tmp_path).splitlines()
    assert lines[2].split(" | ")[2:] == ["45.0", "2 of 3", "44.0", "+0.060 (lowest at epoch 2) |"]
    assert lines[3].split(" | ")[1:] == ["schedule cosine", "50.0", "3 of 3", "50.0", "+0.000 (lowest at epoch 3) |"]
    assert len(transformer_recipe_figure(tmp_path).axes[0].lines) == 2


def test_scst_starts_from_the_best_seed_or_the_one_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """By validation CIDEr unless ``--scst-from`` names a seed (the best seed's run may be on another machine);
    a seed whose run is not here, or a name outside the campaign, is one line."""
    from lit_mc.campaigns.flickr8k import Campaign, main, scst_job

    results, logs = tmp_path / "flickr8k", tmp_path / "logs"
    for seed, cider in ((0, 0.42), (1, 0.41), (2, 0.40)):
        (results / "show_and_tell" / f"seed{seed}").mkdir(parents=True)
        (results / "show_and_tell" / f"seed{seed}" / "metrics.csv").write_text(f"epoch,step,val_cider\n0,9,{cider}\n")
        (results / "show_and_tell" / f"seed{seed}" / "examples.json").write_text("{}")
    checkpoints = logs / "flickr8k_show_and_tell_s2" / "version_0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    best = checkpoints / "best-epoch=06-val_cider=0.4000.ckpt"
    best.write_bytes(b"")
    torch.save({"callbacks": {"ModelCheckpoint{}": {"best_model_path": str(best)}}}, checkpoints / "last.ckpt")
    with pytest.raises(LitMcError, match="seed 0 is not on this machine.*--scst-from show_and_tell=S"):
        scst_job(Campaign(results=results, logs=logs), "show_and_tell").command()
    fit = scst_job(Campaign(results=results, logs=logs, scst_from={"show_and_tell": 2}), "show_and_tell").command()[0]
    assert f"--model.init_args.init_from={best}" in fit
    with pytest.raises(SystemExit) as info:
        main(["--dry-run", "--scst-from", "transformer=7"])
    assert info.value.code == 2 and capsys.readouterr().err.startswith("lit-mc: error: --scst-from transformer=7")


def test_scst_of_a_recipe_model_trains_with_scst_settings_not_the_recipe_ones(tmp_path: Path) -> None:
    """The transformer's recipe (lr 8e-4, cosine with warm-up, label smoothing) comes before the SCST overlay, so the
    resolved SCST run has the overlay's rate, constant schedule and no smoothing, and keeps the recipe's dropout."""
    from lit_mc.campaigns.flickr8k import Campaign, scst_job
    from lit_mc.runner import run_lightning_cli

    results, logs = tmp_path / "flickr8k", tmp_path / "logs"
    (results / "recipe").mkdir(parents=True)
    recipe = {"warmup_steps": 500, "dropout": 0.3, "label_smoothing": 0.1, "schedule": "cosine", "lr": 0.0008}
    (results / "recipe" / "r4.json").write_text(json.dumps({"tag": "r4", "overrides": recipe, "best_val_cider": 1}))
    checkpoints = logs / "flickr8k_transformer_s0" / "version_0" / "checkpoints"
    checkpoints.mkdir(parents=True)
    best = checkpoints / "best-epoch=06-val_cider=0.4000.ckpt"
    best.write_bytes(b"")
    torch.save({"callbacks": {"ModelCheckpoint{}": {"best_model_path": str(best)}}}, checkpoints / "last.ckpt")
    camp = Campaign(repo=REPO, results=results, logs=logs, scst_from={"transformer": 0})
    fit = scst_job(camp, "transformer").command()[0]
    args = fit[fit.index("fit") + 1 :]
    args = [a for a in args if not a.startswith(("--model.init_args.init_from", "--trainer.logger"))]
    model = run_lightning_cli([*args, "--trainer.logger=false"], run=False).model.hparams
    assert (model.lr, model.schedule, model.warmup_steps, model.label_smoothing) == (2e-5, "constant", 0, 0.0)
    assert model.dropout == 0.3 and model.scst == 5
