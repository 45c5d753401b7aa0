"""On the real Flickr8k (when linked into data/flickr8k, or found at ../shared/data/flickr8k): the files parse as
the literature describes them, the known stray line is skipped, and captions clean into a sensible vocabulary."""

from __future__ import annotations

import pytest

from conftest import REPO
from lit_mc.captioning.annotations import load_annotations
from lit_mc.captioning.vocab import Vocabulary, clean_caption

CANDIDATES = (REPO / "data" / "flickr8k", REPO.parent / "shared" / "data" / "flickr8k")
REAL = next((p for p in CANDIDATES if (p / "Flickr8k_text" / "Flickr8k.token.txt").is_file()), None)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(REAL is None, reason="real Flickr8k not in data/flickr8k (lit-mc data flickr8k --source ...)"),
]


def test_real_flickr8k_official_split_and_stray_line() -> None:
    text = REAL / "Flickr8k_text"
    with pytest.warns(UserWarning, match="skipped 2 x captioned image not in the images folder"):
        ann = load_annotations(REAL / "Images", text / "Flickr8k.token.txt", text, None)
    assert {k: len(v) for k, v in ann.splits.items()} == {"train": 6000, "val": 1000, "test": 1000}
    assert len(ann.captions) == 8091 and all(len(ann.captions[n]) == 5 for n in ann.splits["test"])
    assert "2258277193_586949ec62.jpg.1" not in ann.captions  # the stray line of the token file
    vocab = Vocabulary.build((clean_caption(c) for n in ann.splits["train"] for c in ann.captions[n]), min_count=5)
    assert 2000 < len(vocab) < 3500 and vocab.words[4:7] == ("a", "in", "the")
