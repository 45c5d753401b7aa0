"""Captioning: caption files, vocabulary, batched beam search, the three captioners on the toy shapes set,
checkpoints that carry their vocabulary, attention maps and their in-box measure, and bad input."""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from cider_reference import cider_d
from conftest import QUIET, REPO, error_line, flushed_denormals
from lit_mc.captioning import EncoderSpec, Flickr8kDataModule, ShowAndTell, ShowAttendTell, TransformerCaptioner
from lit_mc.captioning.annotations import load_annotations, read_karpathy_json
from lit_mc.captioning.decoding import beam_search
from lit_mc.captioning.encoder import cache_features
from lit_mc.captioning.metrics import coco_scores
from lit_mc.captioning.module import CaptionModule
from lit_mc.captioning.toy import attention_in_box, box_coverage, write_toy_set
from lit_mc.captioning.vocab import SPECIALS, Vocabulary, clean_caption
from lit_mc.cli import run_lightning_cli
from lit_mc.errors import LitMcError

CONFIGS = REPO / "configs" / "flickr8k"
MODELS = ["show_and_tell", "show_attend_tell", "transformer"]


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 / 8 / 8 toy images of 32 px (a 4 x 4 grid of 8 px patches); read-only by convention."""
    return write_toy_set(tmp_path_factory.mktemp("toy"), train=60, val=8, test=8, size=32)


@pytest.fixture(scope="session")
def toy_one_caption(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``toy_root`` with one caption per image: a batch that can be memorised word for word."""
    return write_toy_set(tmp_path_factory.mktemp("toy1"), train=60, val=8, test=8, size=32, captions=1)


@pytest.fixture()
def toy_copy(toy_root: Path, tmp_path: Path) -> Path:
    """A copy of the toy set that a test may damage."""
    return Path(shutil.copytree(toy_root, tmp_path / "toy"))


def toy_args(root: Path, model: str, *extra: str) -> list[str]:
    """``lit-mc fit`` of a shipped Flickr8k config, pointed at the toy set with the parameter-free patch encoder."""
    return [
        "fit", "--config", str(CONFIGS / f"{model}.yaml"), f"--data.data_dir={root}",
        "--data.encoder.backbone=patches", "--data.encoder.weights=null", "--data.encoder.image_size=32",
        "--data.encoder.patch_size=8", "--data.min_count=1", "--data.batch_size=20", "--data.eval_batch_size=8",
        "--trainer.max_epochs=1", "--test_after_fit=false", *QUIET, *extra,
    ]  # fmt: skip


# -- files and words ----------------------------------------------------------------------------------------
def test_clean_caption_and_vocabulary_roundtrip() -> None:
    assert clean_caption("A dog's ball , in the Park .") == ["a", "dog's", "ball", "in", "the", "park"]
    vocab = Vocabulary.build([["a", "dog"], ["a", "cat"], ["a", "dog"]], min_count=2)
    assert vocab.words == ("<pad>", "<start>", "<end>", "<unk>", "a", "dog")
    ids = vocab.encode(["a", "cat", "dog", "extra"], max_length=3)
    assert ids == [vocab.start, 4, vocab.unk, 5, vocab.end]
    assert vocab.decode(ids + [4, 4]) == "a <unk> dog"
    assert Vocabulary.from_state_dict(json.loads(json.dumps(vocab.state_dict()))) == vocab


def test_annotations_skip_stray_line_and_missing_image(toy_copy: Path) -> None:
    token = toy_copy / "Flickr8k_text" / "Flickr8k.token.txt"
    name = token.read_text().splitlines()[0].split("#")[0]
    with token.open("a") as f:  # Flickr8k's known stray line, and a caption of an image that is not there
        f.write("2258277193_586949ec62.jpg.1#0\tA dog .\nnot_there.jpg#0\tA cat .\n")
    (toy_copy / "Images" / "toy_00075.jpg").unlink()  # a test-split image, listed but missing
    with pytest.warns(UserWarning, match=r"skipped 3 x captioned image not in the images folder; 1 x test image"):
        ann = load_annotations(toy_copy / "Images", token, toy_copy / "Flickr8k_text", None)
    assert len(ann.splits["train"]) == 60 and len(ann.splits["test"]) == 7
    assert len(ann.captions[name]) == 5


def test_karpathy_json_layout(tmp_path: Path) -> None:
    data = {
        "images": [
            {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "A dog ."}]},
            {"filename": "b.jpg", "split": "restval", "sentences": [{"raw": "A cat ."}]},
            {"filename": "c.jpg", "split": "test", "sentences": [{"raw": "A cow ."}]},
        ]
    }
    (tmp_path / "dataset_flickr8k.json").write_text(json.dumps(data))
    captions, splits = read_karpathy_json(tmp_path / "dataset_flickr8k.json")
    assert splits == {"train": ["a.jpg", "b.jpg"], "val": [], "test": ["c.jpg"]}
    assert captions["c.jpg"] == ["A cow ."]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"\xff\xfe\x00caption\n", "is not UTF-8"),
        (b"toy_00000.jpg#0 a caption without a tab\n", "line 1 is not '<image>#<k><TAB><caption>'"),
    ],
)
def test_bad_caption_file_is_one_line(
    content: bytes, expected: str, toy_copy: Path, capsys: pytest.CaptureFixture, in_tmp: Path
) -> None:
    (toy_copy / "Flickr8k_text" / "Flickr8k.token.txt").write_bytes(content)
    line = error_line(capsys, toy_args(toy_copy, "show_and_tell"))
    assert expected in line and "Flickr8k.token.txt" in line
    assert not (in_tmp / "lightning_logs").exists()


def test_missing_images_folder(capsys: pytest.CaptureFixture, in_tmp: Path) -> None:
    line = error_line(capsys, toy_args(in_tmp / "nowhere", "show_and_tell"))
    assert "images folder" in line and "does not exist" in line


def test_corrupt_jpeg_is_skipped_counted_and_cached_features_match(toy_copy: Path, tmp_path: Path) -> None:
    (toy_copy / "Images" / "toy_00003.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    spec = EncoderSpec("patches", None, 32, 8)
    cached = Flickr8kDataModule(str(toy_copy), encoder=spec, cache_dir=str(tmp_path / "cache"), min_count=1)
    with pytest.warns(UserWarning, match="1 unreadable image"):
        cached.prepare_data()
    cached.setup("fit")
    assert "toy_00003.jpg" not in cached.splits["train"] and len(cached.splits["train"]) == 59
    assert len(cached.train_captions) == 59 * 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        live = Flickr8kDataModule(str(toy_copy), encoder=spec, cache_features=False, min_count=1)
        live.setup("fit")
    batch_c = cached.on_before_batch_transfer(next(iter(cached.val_dataloader())), 0)
    batch_l = live.on_after_batch_transfer(live.on_before_batch_transfer(next(iter(live.val_dataloader())), 0), 0)
    # float16 storage is the only difference between cached features and the encoder run in the loop
    torch.testing.assert_close(batch_c["features"], batch_l["features"], atol=2e-3, rtol=1e-3)
    assert batch_c["references"] == batch_l["references"] and len(batch_c["references"][0]) == 5


# -- caption data checks and the feature cache ---------------------------------------------------------------
def _set_captions(toy: Path, image: str, captions: list[str]) -> None:
    """Replace ``image``'s captions in the toy token file."""
    token = toy / "Flickr8k_text" / "Flickr8k.token.txt"
    lines = [line for line in token.read_text().splitlines() if not line.startswith(f"{image}#")]
    token.write_text("\n".join([*lines, *(f"{image}#{k}\t{c}" for k, c in enumerate(captions))]) + "\n")


def test_empty_captions_are_dropped_and_counted(toy_copy: Path) -> None:
    _set_captions(toy_copy, "toy_00000.jpg", ["", " . ", "a red circle", "a red circle", "a red circle"])
    _set_captions(toy_copy, "toy_00001.jpg", ["!"] * 5)  # nothing left: the image leaves its split
    dm = Flickr8kDataModule(str(toy_copy), encoder=EncoderSpec("patches", None, 32, 8), cache_features=False)
    with pytest.warns(UserWarning, match=r"7 x empty caption.*1 x train image without captions"):
        dm.prepare_data()
    dm.setup("fit")
    assert "toy_00001.jpg" not in dm.splits["train"] and len(dm.words["toy_00000.jpg"]) == 3
    assert len(dm.train_captions) == 58 * 5 + 3 and (dm.train_captions[:, 1] != dm.vocab.end).all()


def test_a_run_on_a_few_training_images_keeps_the_full_vocabulary(toy_copy: Path) -> None:
    """``train_images`` cuts what trains, not the word map: a short run (an overfit test) decodes as a full one."""
    spec = EncoderSpec("patches", None, 32, 8)
    full = Flickr8kDataModule(str(toy_copy), encoder=spec, cache_features=False, min_count=2)
    few = Flickr8kDataModule(str(toy_copy), encoder=spec, cache_features=False, min_count=2, train_images=2)
    full.setup("fit")
    few.setup("fit")
    assert len(few.splits["train"]) == 2 and len(few.train_captions) == 10
    assert few.vocab == full.vocab and len(few.vocab) > len({w for n in few.splits["train"] for c in few.words[n]
                                                             for w in c})  # fmt: skip


def test_token_file_with_a_byte_order_mark_keeps_its_first_caption(toy_copy: Path) -> None:
    token = toy_copy / "Flickr8k_text" / "Flickr8k.token.txt"
    token.write_bytes(b"\xef\xbb\xbf" + token.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ann = load_annotations(toy_copy / "Images", token, toy_copy / "Flickr8k_text", None)
    assert len(ann.captions["toy_00000.jpg"]) == 5 and len(ann.splits["train"]) == 60


def test_all_captions_empty_is_one_line_before_training(
    toy_copy: Path, capsys: pytest.CaptureFixture, in_tmp: Path
) -> None:
    token = toy_copy / "Flickr8k_text" / "Flickr8k.token.txt"
    token.write_text("".join(f"{line.split(chr(9))[0]}\t.\n" for line in token.read_text().splitlines()))
    line = error_line(capsys, toy_args(toy_copy, "show_and_tell"))
    assert "every caption" in line and "empty" in line and "Flickr8k.token.txt" in line
    assert not (in_tmp / "lightning_logs").exists()


@pytest.mark.parametrize("split_file", ["Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"])
def test_split_of_unknown_images_is_one_line_before_training(
    split_file: str, toy_copy: Path, capsys: pytest.CaptureFixture, in_tmp: Path
) -> None:
    (toy_copy / "Flickr8k_text" / split_file).write_text("nope_1.jpg\nnope_2.jpg\n")
    line = error_line(capsys, toy_args(toy_copy, "show_and_tell", "--test_after_fit=true"))
    assert split_file in line and "2 images" in line
    assert not (in_tmp / "lightning_logs").exists()


def test_split_of_unreadable_images_is_an_error_at_setup(toy_copy: Path) -> None:
    for i in range(60, 68):  # every validation image
        (toy_copy / "Images" / f"toy_{i:05d}.jpg").write_bytes(b"not an image")
    dm = Flickr8kDataModule(str(toy_copy), encoder=EncoderSpec("patches", None, 32, 8), cache_features=False)
    with pytest.warns(UserWarning, match="8 unreadable"), pytest.raises(LitMcError, match="no val image .* readable"):
        dm.setup("fit")


def test_repaired_image_is_encoded_again(toy_copy: Path, tmp_path: Path) -> None:
    image = toy_copy / "Images" / "toy_00003.jpg"
    good = image.read_bytes()
    image.write_bytes(b"\xff\xd8 not really a jpeg")
    spec, cache = EncoderSpec("patches", None, 32, 8), str(tmp_path / "cache")
    with pytest.warns(UserWarning, match="1 unreadable image"):
        Flickr8kDataModule(str(toy_copy), encoder=spec, cache_dir=cache).prepare_data()
    image.write_bytes(good)
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dm = Flickr8kDataModule(str(toy_copy), encoder=spec, cache_dir=cache)
        dm.prepare_data()
    dm.setup("fit")
    assert "toy_00003.jpg" in dm.splits["train"] and len(dm.train_captions) == 60 * 5


def test_feature_cache_survives_a_fresh_copy_of_the_same_images(toy_copy: Path, tmp_path: Path) -> None:
    """A dataset copied afresh (same bytes, new modification times, as on a new session's machine) keeps its
    cache: rebuilding it would cost the full Flickr8k encoding (about 25 core-minutes) for nothing."""
    images, names = toy_copy / "Images", [f"toy_{i:05d}.jpg" for i in range(4)]
    patches = EncoderSpec("patches", None, 32, 8)
    cache_features(images, names, patches, tmp_path / "cache")
    built = next((tmp_path / "cache").glob("*/features.npy")).stat().st_mtime_ns
    for n in names:  # same bytes, a new time
        os.utime(images / n, ns=(0, (images / n).stat().st_mtime_ns + 10**9))
    cache_features(images, names, patches, tmp_path / "cache")
    assert next((tmp_path / "cache").glob("*/features.npy")).stat().st_mtime_ns == built  # not rebuilt
    index = json.loads(next((tmp_path / "cache").glob("*/index.json")).read_text())
    assert index["files"][names[0]][1] == (images / names[0]).stat().st_mtime_ns  # the new time recorded


def test_feature_cache_follows_image_and_weights_file_contents(toy_copy: Path, tmp_path: Path) -> None:
    import timm

    images, names = toy_copy / "Images", [f"toy_{i:05d}.jpg" for i in range(4)]
    patches = EncoderSpec("patches", None, 32, 8)
    before = np.array(cache_features(images, names, patches, tmp_path / "cache").features)
    shutil.copy(images / "toy_00004.jpg", images / "toy_00000.jpg")  # another picture under the same name
    os.utime(images / "toy_00000.jpg", ns=(0, (images / "toy_00000.jpg").stat().st_mtime_ns + 10**9))
    after = np.array(cache_features(images, names, patches, tmp_path / "cache").features)
    assert not np.array_equal(before[0], after[0]) and np.array_equal(before[1:], after[1:])

    features = []
    for seed, folder in enumerate(("a", "b")):  # two weights files with the same stem
        torch.manual_seed(seed)
        (tmp_path / folder).mkdir()
        torch.save(timm.create_model("test_efficientnet").state_dict(), tmp_path / folder / "weights.pt")
        spec = EncoderSpec("test_efficientnet", str(tmp_path / folder / "weights.pt"), 32)
        features.append(np.array(cache_features(images, names, spec, tmp_path / "cache").features))
    fresh = cache_features(images, names, spec, tmp_path / "fresh").features
    assert not np.array_equal(features[0], features[1]) and np.array_equal(features[1], fresh)


def test_feature_cache_build_says_what_it_caches(toy_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    names = [f"toy_{i:05d}.jpg" for i in range(10)]
    cache_features(toy_root / "Images", names, EncoderSpec("patches", None, 32, 8), tmp_path / "cache")
    out = capsys.readouterr().out
    assert "caching patches" in out and "10 images" in out
    cache_features(toy_root / "Images", names, EncoderSpec("patches", None, 32, 8), tmp_path / "cache")
    assert "caching" not in capsys.readouterr().out  # reused: nothing to say


_BUILD = """
import os, signal, sys, time
from pathlib import Path
import lit_mc.captioning.encoder as enc
real = enc.load_images
def load(paths, size):
    if sys.argv[1] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    print("building", flush=True)
    time.sleep(300)
enc.load_images = load
names = sorted(p.name for p in Path(sys.argv[2]).iterdir())
enc.cache_features(Path(sys.argv[2]), names, enc.EncoderSpec("patches", None, 32, 8), Path(sys.argv[3]))
"""


def test_killed_cache_build_leaves_no_temporary_folder_behind(toy_root: Path, tmp_path: Path) -> None:
    """A SIGKILLed build's hidden folder goes when the next build starts; a live concurrent build's stays."""
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    build = [sys.executable, "-c", _BUILD]
    killed = subprocess.run([*build, "die", str(toy_root / "Images"), str(cache)], env=env, timeout=120)
    assert killed.returncode == -9
    (left,) = [p for p in cache.iterdir() if p.name.startswith(".")]
    live = subprocess.Popen([*build, "wait", str(toy_root / "Images"), str(cache)], env=env, stdout=subprocess.PIPE)
    try:
        assert b"building\n" in iter(live.stdout.readline, b"")  # it has made its temporary folder
        (running,) = [p for p in cache.iterdir() if p.name.startswith(".") and p != left]
        cache_features(toy_root / "Images", ["toy_00000.jpg"], EncoderSpec("patches", None, 32, 8), cache)
        assert not left.exists() and running.is_dir()
    finally:
        live.kill()
        live.wait()


# -- decoding -----------------------------------------------------------------------------------------------
class ScriptedDecoder:
    """Log-probabilities that make greedy decoding pick a worse caption than beam search.

    Vocabulary: 0 pad, 1 start, 2 end, 3 "a", 4 "b". First step: "a" 0.6, "b" 0.4. After "a": end 0.5, "a"/"b"
    0.25 each; after "b": end 1.0. Greedy: "a <end>" (0.6 * 0.5 = 0.30); best: "b <end>" (0.4).
    """

    table = {
        1: [0.0, 0.0, 0.0, 0.6, 0.4],
        3: [0.0, 0.0, 0.5, 0.25, 0.25],
        4: [0.0, 0.0, 1.0, 0.0, 0.0],
        2: [1.0, 0.0, 0.0, 0.0, 0.0],
        0: [1.0, 0.0, 0.0, 0.0, 0.0],
    }

    def start(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": features}

    def step(self, state: dict, tokens: torch.Tensor):
        probs = torch.tensor([self.table[int(t)] for t in tokens])
        return probs.clamp(min=1e-12).log(), state, None


def test_beam_search_beats_greedy_on_a_scripted_decoder() -> None:
    features = torch.zeros(3, 1, 1)
    greedy = beam_search(ScriptedDecoder(), features, start=1, end=2, pad=0, beam_size=1, max_length=5)
    beam = beam_search(ScriptedDecoder(), features, start=1, end=2, pad=0, beam_size=2, max_length=5)
    assert greedy.tokens[0, :2].tolist() == [3, 2] and beam.tokens[0, :2].tolist() == [4, 2]
    assert beam.scores[0].exp().item() == pytest.approx(0.4)
    assert (beam.tokens == beam.tokens[0]).all()  # every image of the batch decoded alike


TINY = Vocabulary(SPECIALS + ("a", "b"))  # 6 tokens; a caption: up to max_length of the 5 others, then <end>
CAPTIONERS = {  # small enough to score every caption
    "show_and_tell": (ShowAndTell, {"embed_dim": 8, "hidden_dim": 16}),
    "show_attend_tell": (ShowAttendTell, {"embed_dim": 8, "hidden_dim": 16, "attention_dim": 8}),
    "transformer": (TransformerCaptioner, {"d_model": 16, "heads": 2, "layers": 2, "ff_dim": 32}),
}


def tiny_captioner(model: str, max_length: int, length_penalty: float, end_bias: float = 0.0) -> CaptionModule:
    """A random captioner on the tiny vocabulary, in eval mode, with peaked next-word distributions (so that the
    captions' scores lie far apart) and ``end_bias`` added to the logit of ``<end>``."""
    torch.manual_seed(0)
    cls, sizes = CAPTIONERS[model]
    module = cls(**sizes, max_length=max_length, length_penalty=length_penalty)
    module._build(TINY, feature_dim=6)
    module.eval()
    with torch.no_grad():
        module.decoder.out.weight.mul_(3.0)
        module.decoder.out.bias[TINY.end] += end_bias
    return module


Caption = tuple[int, ...]


def caption_log_probs(
    decoder: torch.nn.Module, image: torch.Tensor, captions: list[Caption]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Total log-probability of each caption (its tokens after ``<start>``, ``<end>`` included) for one image, and
    the attention of each step, by the decoder's teacher-forced ``forward`` (not the ``step`` that beam search uses)."""
    lengths = torch.tensor([len(c) for c in captions])
    inputs = torch.full((len(captions), int(lengths.max())), TINY.pad)
    targets = inputs.clone()
    for row, caption in enumerate(captions):
        inputs[row, : len(caption)] = torch.tensor([TINY.start, *caption[:-1]])
        targets[row, : len(caption)] = torch.tensor(caption)
    with torch.no_grad():
        logits, attention = decoder(image.expand(len(captions), -1, -1), inputs)
    picked = logits.log_softmax(-1).gather(2, targets.unsqueeze(2)).squeeze(2)
    return (picked * (torch.arange(inputs.shape[1]) < lengths.unsqueeze(1))).sum(1), attention


def every_caption(max_length: int) -> list[Caption]:
    """Every caption beam search may return: ``n <= max_length`` tokens other than ``<end>`` (``<pad>``, ``<start>``
    and ``<unk>`` included: the decoders do not forbid them), then ``<end>``."""
    others = [t for t in range(len(TINY)) if t != TINY.end]
    return [(*words, TINY.end) for n in range(max_length + 1) for words in itertools.product(others, repeat=n)]


def brute_force_best(
    decoder: torch.nn.Module, features: torch.Tensor, max_length: int, length_penalty: float
) -> list[tuple[Caption, float]]:
    """Per image, the caption of highest log-probability / length ** length_penalty (length counting ``<end>``),
    and that score, by scoring every caption."""
    captions, best = every_caption(max_length), []
    for image in features:
        totals, _ = caption_log_probs(decoder, image[None], captions)
        scores = totals / torch.tensor([float(len(c)) for c in captions]) ** length_penalty
        top = scores.topk(2)
        assert top.values[0] - top.values[1] > 1e-4  # no near-tie: the best caption is well defined
        best.append((captions[int(top.indices[0])], float(top.values[0])))
    return best


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("length_penalty", "end_bias"),
    [(0.0, 0.0), (1.0, 0.0), (0.7, -4.0)],
    ids=["raw-sum", "mean-per-word", "cut-at-max-length"],
)
def test_exhaustive_beam_search_finds_the_brute_force_best_caption(
    model: str, length_penalty: float, end_bias: float
) -> None:
    """With a beam for every possible caption, beam search is exact: for each image of a batch it returns the
    caption that scoring all 156 captions of up to 3 words finds best, and that caption's normalised score."""
    max_length = 3
    module = tiny_captioner(model, max_length, length_penalty, end_bias)
    features = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(1))
    best = brute_force_best(module.decoder, features, max_length, length_penalty)
    decoded = module.generate(features, beam_size=len(every_caption(max_length)))
    for row, (caption, score) in enumerate(best):
        tokens = decoded.tokens[row].tolist()
        assert tokens[: len(caption)] == list(caption) and set(tokens[len(caption) :]) <= {TINY.pad}
        assert float(decoded.scores[row]) == pytest.approx(score, abs=1e-5)
    lengths = [len(caption) - 1 for caption, _ in best]
    if end_bias:  # the scenario tests the cut: every best caption runs to max_length words, then <end>
        assert lengths == [max_length] * len(best)
    elif length_penalty:  # ... and the penalty: it changes the best caption of some image
        assert best != brute_force_best(module.decoder, features, max_length, 0.0)


def reference_beam_search(
    decoder: torch.nn.Module, image: torch.Tensor, k: int, max_length: int, penalty: float
) -> tuple[Caption, float]:
    """Beam search written plainly for one image: keep the ``k`` best (caption, total log-probability) by total,
    finished captions competing unchanged; at the last step only ``<end>``; at the end, pick by total / length **
    ``penalty``. Next-word log-probabilities from the teacher-forced forward pass."""
    beams: list[tuple[Caption, float]] = [((), 0.0)]
    for step in range(max_length + 1):
        candidates = []
        for caption, total in beams:
            if caption and caption[-1] == TINY.end:
                candidates.append((caption, total))
                continue
            with torch.no_grad():
                logits, _ = decoder(image[None], torch.tensor([[TINY.start, *caption]]))
            log_probs = logits[0, -1].log_softmax(-1).tolist()
            for token in [TINY.end] if step == max_length else range(len(TINY)):
                candidates.append(((*caption, token), total + log_probs[token]))
        candidates.sort(key=lambda c: c[1], reverse=True)
        if len(candidates) > k:
            assert candidates[k - 1][1] - candidates[k][1] > 1e-5  # no near-tie at the cut
        beams = candidates[:k]
        if all(caption[-1] == TINY.end for caption, _ in beams):
            break
    caption, total = max(beams, key=lambda c: c[1] / len(c[0]) ** penalty)
    return caption, total / len(caption) ** penalty


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("beam_size", [1, 2, 3])
def test_small_beams_keep_what_a_plain_beam_search_keeps(model: str, beam_size: int) -> None:
    """Beams too small to be exact, batched over 3 images: the caption, score and attention of a per-image beam
    search written plainly (greedy decoding at beam size 1)."""
    max_length, penalty = 4, 0.5
    module = tiny_captioner(model, max_length, penalty, end_bias=-1.0)
    features = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(2))
    decoded = module.generate(features, beam_size)
    for row, image in enumerate(features):
        caption, score = reference_beam_search(module.decoder, image, beam_size, max_length, penalty)
        tokens = decoded.tokens[row].tolist()
        assert tokens[: len(caption)] == list(caption) and set(tokens[len(caption) :]) <= {TINY.pad}
        assert float(decoded.scores[row]) == pytest.approx(score, abs=1e-5)
        _, attention = caption_log_probs(module.decoder, image[None], [caption])
        if model == "show_and_tell":
            assert decoded.attention is None and attention is None
        else:  # the attention of each step of the returned caption, followed through the beams' reordering
            torch.testing.assert_close(decoded.attention[row, : len(caption)], attention[0], atol=1e-5, rtol=1e-4)


# Two images, worked by hand below: image 0's hypothesis matches its first reference up to "on", then says "grass"
# where the reference says "the grass"; image 1's repeats "people" (clipped) and misses the rest.
HYPOTHESES = ["a dog runs on grass", "people people ride"]
REFERENCES = [["a dog runs on the grass", "a dog"], ["two people ride their bikes", "people ride bikes on the road"]]


def test_bleu_rouge_and_cider_equal_the_hand_computed_values() -> None:
    scores = coco_scores(HYPOTHESES, REFERENCES, meteor=False)
    # BLEU (corpus level, as pycocoevalcap): clipped n-gram matches / hypothesis n-grams, summed over the images.
    #   image 0: 1-grams 5/5; 2-grams 3/4 (not "on grass"); 3-grams 2/3; 4-grams 1/2 ("a dog runs on")
    #   image 1: 1-grams 2/3 ("people" counts once); 2-grams 1/2 ("people ride"); 3-grams 0/1; 4-grams 0/0
    precisions = [7 / 8, 4 / 6, 2 / 4, 1 / 2]
    # brevity penalty: 8 hypothesis words against the closest reference lengths, 6 (of 6, 2) and 5 (of 5, 6)
    brevity = math.exp(1 - 11 / 8)
    for n in range(1, 5):  # BLEU-n: geometric mean of the first n precisions
        expected = brevity * math.prod(precisions[:n]) ** (1 / n)
        assert scores[f"bleu{n}"] == pytest.approx(expected, rel=1e-6), n  # 1e-9 epsilons in pycocoevalcap

    # ROUGE-L: per image the best LCS precision and the best LCS recall over its references (each may come from
    # another reference), F with beta = 1.2, mean over images.
    #   image 0: LCS 5 with the first reference (precision 5/5, recall 5/6), 2 with "a dog" (2/5, 2/2)
    #   image 1: LCS 2 ("people ride") with both: precisions 2/3, recalls 2/5 and 2/6
    def f(precision: float, recall: float) -> float:
        return (1 + 1.2**2) * precision * recall / (recall + 1.2**2 * precision)

    assert scores["rouge_l"] == pytest.approx((f(1, 1) + f(2 / 3, 2 / 5)) / 2, rel=1e-9)

    # CIDEr-D: the mean per-image value of the reference implementation written from the definition
    per_image = cider_d(HYPOTHESES, REFERENCES)
    assert scores["cider"] == pytest.approx(sum(per_image) / 2, rel=1e-9) and per_image[0] > per_image[1] > 0


def test_cider_reference_by_hand_on_one_word() -> None:
    """The CIDEr reference itself on cases small enough to do by hand: one-word captions of two images, so only
    the 1-gram term counts (the 2..4-gram terms are 0) and CIDEr = 10 * (mean over references of the 1-gram
    cosine) / 4, no length penalty. A word in the references of one image has idf log 2 - log 1; a word in both
    images' references has idf log 2 - log 2 = 0, which makes its vectors zero and its cosine 0."""
    assert cider_d(["dog", "cat"], [["dog"], ["cat", "cow"]]) == pytest.approx([10 * 1 / 4, 10 * (1 + 0) / 2 / 4])
    assert cider_d(["dog", "cat"], [["dog"], ["cat", "dog"]]) == pytest.approx([0.0, 10 * (1 + 0) / 2 / 4])


def test_meteor_by_hand_names_and_empty_captions() -> None:
    """METEOR 1.5 (its Java jar) on one caption whose words are all content words and all matched in one chunk:
    precision 1, recall 3/4, Fmean = P R / (0.85 P + 0.15 R), fragmentation penalty 0.6 (chunks / matches) ** 0.2
    (the English parameters alpha 0.85, beta 0.2, gamma 0.6); a caption equal to its reference scores 1."""
    scores = coco_scores(["brown dog runs"], [["brown dog runs fast"]])
    fmean = 1 * 0.75 / (0.85 * 1 + 0.15 * 0.75)
    assert scores["meteor"] == pytest.approx(fmean * (1 - 0.6 * (1 / 3) ** 0.2))
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"}
    assert coco_scores(["a dog runs"], [["a dog runs"]])["meteor"] == pytest.approx(1.0)
    # an empty hypothesis is scored as the one unknown word "unk" (METEOR's process would wait for ever on "")
    refs = [["a dog runs"], ["two people ride bikes"]]
    assert coco_scores(["a dog", ""], refs, meteor=False) == coco_scores(["a dog", "unk"], refs, meteor=False)


def test_meteor_keeps_one_java_process_and_replaces_a_broken_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting METEOR's jar takes seconds: every score of a process goes through one; a call that fails half-way
    (its pipe may hold half an answer) stops it, and the next call starts another that scores the same."""
    from lit_mc.captioning import metrics

    caption, refs = ["brown dog runs"], [["brown dog runs fast"]]
    first = coco_scores(caption, refs)["meteor"]
    process = metrics._meteor().meteor_p
    assert coco_scores(["a cat", "a dog"], [["a cat sits"], ["a dog"]])["meteor"] > 0
    assert metrics._meteor().meteor_p is process and process.poll() is None

    def broken(*args: object) -> str:
        raise RuntimeError("the jar went away")

    monkeypatch.setattr(metrics._meteor(), "_stat", broken)
    with pytest.raises(RuntimeError, match="went away"):
        coco_scores(caption, refs)
    assert process.wait(timeout=30) != 0
    assert coco_scores(caption, refs)["meteor"] == first and metrics._meteor().meteor_p is not process


# -- the captioners -----------------------------------------------------------------------------------------
# The overfit tests stop once every word is memorised, not at a step count. A mean cross-entropy below ln 2 / N over
# the batch's N words (16 toy captions: N <= 16 x 10) leaves no word below probability 1/2: greedy decoding then
# gives back each caption. At 0.01 (safe for N <= 69 only) a word could stay wrong, as one did on one thread.
STOP_WHEN_MEMORISED = json.dumps({
    "class_path": "lightning.pytorch.callbacks.EarlyStopping",
    "init_args": {"monitor": "train_ce", "mode": "min", "stopping_threshold": 0.004, "patience": 10**6,
                  "check_on_train_epoch_end": True},
})  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
def test_overfit_one_batch_memorises_its_captions(model: str, toy_one_caption: Path, in_tmp: Path) -> None:
    """``--trainer.overfit_batches=1``: the loss falls below a bound and greedy decoding gives back the captions
    (training stops once every word is memorised, at most 400 steps)."""
    extra = ["--trainer.overfit_batches=1", "--trainer.max_epochs=400", "--trainer.logger=false",
             "--trainer.enable_checkpointing=false", f"--trainer.callbacks=[{STOP_WHEN_MEMORISED}]", "--model.lr=0.003",
             "--model.dropout=0", "--trainer.check_val_every_n_epoch=1000", "--data.batch_size=16"]  # fmt: skip
    with flushed_denormals(model != "transformer"):  # measured: 3-4x faster for the LSTMs, slower for this one
        cli = run_lightning_cli(toy_args(toy_one_caption, model, *extra))
    assert cli.trainer.callback_metrics["train_ce"] < 0.05
    dm = cli.datamodule
    rows, captions = next(iter(dm.train_dataloader()))
    batch = dm.on_before_batch_transfer((rows, captions), 0)
    cli.model.eval()
    decoded = cli.model.captions(batch["features"], beam_size=1)
    assert decoded == [dm.vocab.decode(caption.tolist()) for caption in captions]


def test_fit_that_builds_the_feature_cache_ends_like_one_that_reuses_it(toy_root: Path, in_tmp: Path) -> None:
    """Seeding does not depend on whether the cache was there: building it (a timm encoder) draws no random numbers."""
    extra = ["--data.encoder.backbone=tf_efficientnet_lite0", f"--data.cache_dir={in_tmp / 'cache'}",
             "--trainer.logger=false", "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
             "--trainer.limit_val_batches=0"]  # fmt: skip
    weights = []
    for _ in range(2):  # the first fit builds the cache, the second reuses it
        cli = run_lightning_cli(toy_args(toy_root, "show_and_tell", *extra))
        weights.append(cli.model.state_dict())
    assert (in_tmp / "cache").is_dir()
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


class _EncoderSnapshot(L.Callback):
    """The encoder's parameters when training starts, to see which ones training moved."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.before = {name: p.detach().clone() for name, p in pl_module.encoder.named_parameters()}


FINE_TUNE = ["--data.encoder.backbone=tf_efficientnet_lite0", "--data.encoder.image_size=64",
             "--model.encoder_blocks=1", "--trainer.limit_train_batches=2",
             "--trainer.limit_val_batches=1"]  # fmt: skip


def test_fine_tuned_encoder_trains_only_its_last_blocks_and_travels_in_the_checkpoint(
    toy_root: Path, in_tmp: Path
) -> None:
    args = toy_args(toy_root, "show_attend_tell", *FINE_TUNE, "--data.cache_features=false")[1:]  # no subcommand
    cli = run_lightning_cli(args, run=False)
    snapshot = _EncoderSnapshot()
    cli.trainer.callbacks.append(snapshot)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    encoder = cli.model.encoder
    moved = {name for name, p in encoder.named_parameters() if not torch.equal(p, snapshot.before[name])}
    last_stage = len(encoder.net.blocks) - 1
    assert moved and all(n.startswith((f"net.blocks.{last_stage}.", "net.conv_head", "net.bn2")) for n in moved)
    assert not encoder.net.conv_stem.weight.requires_grad

    ckpt = next(Path(cli.trainer.log_dir).glob("checkpoints/best-*.ckpt"))
    loaded = ShowAttendTell.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encoder(images), encoder.eval()(images))
        with pytest.raises(LitMcError, match="fine-tuned its encoder"):
            loaded.batch_features({"features": torch.zeros(2, 4, 1280)})


def test_fine_tuning_the_encoder_refuses_cached_features(
    toy_root: Path, capsys: pytest.CaptureFixture, in_tmp: Path
) -> None:
    line = error_line(capsys, toy_args(toy_root, "show_attend_tell", *FINE_TUNE, "--data.cache_dir=cache"))
    assert "needs images" in line and "cache_features=false" in line
    assert not (in_tmp / "lightning_logs").exists()  # the refusal leaves no run folder


def test_checkpoint_carries_vocabulary_and_tests_without_config(toy_root: Path, in_tmp: Path) -> None:
    cli = run_lightning_cli(toy_args(toy_root, "show_attend_tell", "--model.test_beam_sizes=[1,2]"))
    ckpt = next(Path(cli.trainer.log_dir).glob("checkpoints/best-*.ckpt"))
    meta = torch.load(ckpt, map_location="cpu", weights_only=True)["lit_mc"]
    assert meta["model_class"] == "ShowAttendTell" and meta["vocab"]["words"] == list(cli.model.vocab.words)
    attention_pngs = list(Path(cli.trainer.log_dir).glob("attention/epoch=00/row=*.png"))
    assert len(attention_pngs) == 4
    test = run_lightning_cli(["test", f"--ckpt_path={ckpt}", *QUIET])
    scores = json.loads((Path(test.trainer.log_dir) / "test_metrics.json").read_text())
    assert set(scores) == {"beam1", "beam2"} and 0 <= scores["beam2"]["bleu4"] <= 1
    assert (Path(test.trainer.log_dir) / "captions.csv").read_text().count("\n") == 1 + 2 * 8


def test_a_checkpoint_is_tested_with_other_decoding_settings_but_not_other_weights(
    toy_root: Path, in_tmp: Path, capsys: pytest.CaptureFixture
) -> None:
    """The decoding chosen on validation is applied at test through ``lit-mc test --ckpt_path``: beam sizes and the
    length penalty are the command line's (not the checkpoint's), while a setting that shapes the weights is refused."""
    cli = run_lightning_cli(toy_args(toy_root, "show_and_tell"))
    ckpt = next(Path(cli.trainer.log_dir).glob("checkpoints/best-*.ckpt"))
    decoding = ["--model.init_args.test_beam_sizes=[2]", "--model.init_args.length_penalty=0.7"]
    test = run_lightning_cli(["test", *toy_args(toy_root, "show_and_tell")[1:], f"--ckpt_path={ckpt}", *decoding])
    assert test.model.hparams.length_penalty == 0.7 and test.model.hparams.test_beam_sizes == [2]
    scores = json.loads((Path(test.trainer.log_dir) / "test_metrics.json").read_text())
    assert set(scores) == {"beam2"}
    line = error_line(capsys, ["test", *toy_args(toy_root, "show_and_tell")[1:], f"--ckpt_path={ckpt}",
                               "--model.init_args.hidden_dim=8"])  # fmt: skip
    assert "differs from the configured one in model.hidden_dim" in line


def test_a_captioner_logs_its_captions_pictures_and_attention_to_wandb(
    toy_root: Path, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--trainer.logger=WandbLogger`` (offline here): each validation epoch's attention table (picture, caption,
    overlay) and the test table (picture, caption per beam size, a reference) are in the run's W&B files."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    extra = ["--trainer.logger=WandbLogger", "--test_after_fit=true", "--model.test_beam_sizes=[1,2]"]
    try:
        cli = run_lightning_cli(toy_args(toy_root, "show_attend_tell", *extra))
    finally:
        wandb.finish()
    run = Path(cli.trainer.log_dir)
    tables = {p.name.split("_")[0]: json.loads(p.read_text()) for p in run.rglob("media/table/**/*.table.json")}
    assert set(tables) == {"captions", "test"}, sorted(p.name for p in run.rglob("media/table/**/*"))
    attention, test = tables["captions"], tables["test"]
    assert attention["columns"] == ["epoch", "image", "caption", "attention"] and len(attention["data"]) == 4
    assert test["columns"] == ["image", "caption (beam 1)", "caption (beam 2)", "reference"]
    assert len(test["data"]) == 8 and all(row[1] and row[3] for row in test["data"])
    staged = [p for p in (run / "wandb" / "artifacts" / "staging").iterdir() if p.read_bytes()[:4] == b"\x89PNG"]
    assert len(staged) >= 4 + 4 + 8  # the tables' overlays and pictures, kept in the run folder until synced


def test_resume_with_another_vocabulary_is_refused(toy_root: Path, in_tmp: Path, capsys: pytest.CaptureFixture) -> None:
    cli = run_lightning_cli(toy_args(toy_root, "show_and_tell"))
    ckpt = next(Path(cli.trainer.log_dir).glob("checkpoints/last.ckpt"))
    line = error_line(capsys, [*toy_args(toy_root, "show_and_tell", "--data.min_count=100"), f"--ckpt_path={ckpt}"])
    assert "vocabulary" in line and "differs" in line
    assert [p.name for p in (in_tmp / "lightning_logs").iterdir()] == ["version_0"]  # the refusal left no folder
    line = error_line(capsys, [*toy_args(toy_root, "transformer"), f"--ckpt_path={ckpt}"])
    assert "holds a ShowAndTell, not the configured TransformerCaptioner" in line


def test_box_coverage_and_attention_in_box() -> None:
    coverage = box_coverage([0, 0, 12, 8], grid=(4, 4), size=32)  # covers cell (0,0) and half of cell (0,1)
    assert coverage.view(4, 4)[0].tolist() == [1.0, 0.5, 0.0, 0.0] and coverage.sum() == 1.5
    objects = [{"colour": "red", "shape": "circle", "box": [0, 0, 8, 8]}]
    attention = torch.zeros(4, 16)
    attention[1, 0] = attention[2, 0] = 1.0  # looks at the red circle while saying "red circle"
    attention[0, 5] = attention[3, 5] = 1.0
    found = attention_in_box(["a", "red", "circle", "<end>"], attention, objects, (4, 4), 32)
    assert found == [(1.0, 64 / 1024)]


def test_killed_captioner_resumes_to_the_same_weights(toy_root: Path, tmp_path: Path) -> None:
    """SIGKILL a ShowAttendTell run in its second (last) epoch's validation; ``--ckpt_path last`` ends with the
    uninterrupted run's weights, the same checkpoint files and the same best checkpoint on record (the one a test
    would use). Two epochs: the kill lands after one epoch's checkpoints, the resume re-runs the epoch it lost."""
    newest = json.dumps([{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                          "init_args": {"monitor": "step", "mode": "max", "filename": "newest-{step}"}}])  # fmt: skip

    def fit(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "lit_mc.cli", *toy_args(toy_root, "show_attend_tell", "--trainer.max_epochs=2",
                "--trainer.deterministic=true", f"--trainer.callbacks+={newest}", *extra)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)

    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    assert fit(tmp_path / "straight").returncode == 0
    killer = json.dumps([{"class_path": "killers.KillAt", "init_args": {"point": "validation", "epoch": 1}}])
    assert fit(tmp_path / "killed", f"--trainer.callbacks+={killer}").returncode == -9
    resumed = fit(tmp_path / "killed", "--ckpt_path=last")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-2000:]
    runs = [tmp_path / d / "lightning_logs" / "version_0" / "checkpoints" for d in ("straight", "killed")]
    final = [torch.load(run / "last.ckpt", weights_only=True) for run in runs]
    assert final[0]["epoch"] == final[1]["epoch"] == 1
    for key, value in final[0]["state_dict"].items():
        assert torch.equal(value, final[1]["state_dict"][key]), key
    assert sorted(p.name for p in runs[0].iterdir()) == sorted(p.name for p in runs[1].iterdir())
    best = [{k: s["best_model_path"] for k, s in f["callbacks"].items() if "best_model_path" in s} for f in final]
    assert best[0] == best[1]


@pytest.mark.parametrize("given,expected", [(None, (5.0, "norm")), (0.25, (0.25, "value"))])
def test_trainer_gradient_clip_val_applies_to_captioners(given: float | None, expected: tuple) -> None:
    """The captioner's own ``grad_clip`` used to override (and so disable) ``--trainer.gradient_clip_val``."""
    from lit_mc.captioning import ShowAndTell

    module, calls = ShowAndTell(grad_clip=5.0), []
    module.clip_gradients = lambda opt, gradient_clip_val=None, gradient_clip_algorithm=None: calls.append(
        (gradient_clip_val, gradient_clip_algorithm)
    )
    module.configure_gradient_clipping(None, given, "value" if given is not None else None)
    assert calls == [expected]


def test_attention_overlay_lights_the_attended_cell_and_keeps_its_colours() -> None:
    """The overlay was a jet colour map over the picture, which hid red and blue objects; now the picture itself is
    dimmed where the word did not look."""
    from lit_mc.captioning.attention import _spotlight, attention_figure

    picture = np.full((4, 4, 3), [200, 30, 30], np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0
    lit = _spotlight(picture, heat)
    assert lit[0, 0].tolist() == [200, 30, 30] and (lit[1:, 1:] <= 30).all()
    image = torch.from_numpy(np.full((3, 8, 8), 120, np.uint8))
    fig = attention_figure(image, ["a", "dog"], torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]), (2, 2))
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a dog", "a", "dog"]


def test_attention_entropy_is_read_by_word_class_and_head() -> None:
    """Uniform attention has normalised entropy 1 and attention on one cell 0; words are classed function or
    content; the per-head reading averages each layer's and head's map over the words of a class."""
    from lit_mc.captioning.attention_reading import entropy_by_head, entropy_by_word_class, normalised_entropy

    uniform, one_cell = torch.full((16,), 1 / 16), torch.eye(16)[3]
    assert normalised_entropy(torch.stack([uniform, one_cell])).tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    attention = torch.stack([uniform, one_cell, one_cell, uniform])  # "a" and "of" diffuse, "dog" and "runs" sharp
    by_class = entropy_by_word_class([["a", "dog", "runs", "of"]], [attention])
    assert by_class == {"content": {"words": 2, "mean_entropy": pytest.approx(0.0, abs=1e-6)},
                        "function": {"words": 2, "mean_entropy": pytest.approx(1.0)}}  # fmt: skip
    swapped = torch.stack([one_cell, uniform, uniform, one_cell])
    maps = torch.stack([attention, swapped])[None]  # (1 layer, 2 heads, T, cells): head 1 sharp on function words
    heads = entropy_by_head([["a", "dog", "runs", "of"]], [maps])
    assert [(h["head"], round(h["content"], 3), round(h["function"], 3)) for h in heads] == [
        (0, 0.0, 1.0),
        (1, 1.0, 0.0),
    ]
