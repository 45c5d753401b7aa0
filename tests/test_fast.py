"""The airbench-style fast recipe: FastNet, the triangular schedule, BatchNorm-bias groups, TTA and Lookahead."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import QUIET, REPO
from lit_mc.classification import FastNet, Lookahead
from lit_mc.classification.module import ImageClassifier, _triangle
from lit_mc.cli import run_lightning_cli

FAST = str(REPO / "configs" / "cifar10" / "fast.yaml")
SMALL = "--model.init_args.model.init_args.widths=[8,16,16]"


def test_fastnet_shapes_frozen_layers_and_identity_init() -> None:
    net = FastNet(widths=(8, 16, 16))
    assert net(torch.rand(3, 3, 32, 32)).shape == (3, 10)
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and not any(m.weight.requires_grad for m in norms)
    conv = net.groups[1][0]  # 8 -> 16 channels: identity on the first 8 outputs
    centre = conv.weight[:8, :, 1, 1]
    assert torch.equal(centre, torch.eye(8)) and float(conv.weight[:8].detach().abs().sum()) == 8.0
    with pytest.raises(ValueError, match="three conv groups"):
        FastNet(widths=(8, 16))


def test_whitening_layer_decorrelates_patches() -> None:
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.4, 0.0], [0.8, 0.3, 0.3]])  # strongly correlated channels
    smooth = nn.functional.avg_pool2d(torch.randn(200, 3, 34, 34), 3, stride=1)  # and correlated neighbours
    images = torch.einsum("dc,nchw->ndhw", mix, smooth)
    net = FastNet(widths=(8, 16, 16))
    net.init_from_data(images, eps=0.0)  # the default eps damps the weakest directions of real images
    out = nn.functional.conv2d(images, net.whiten.weight)[:, :12]  # the half that is not negated
    flat = out.transpose(0, 1).reshape(12, -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    covariance = flat @ flat.T / flat.shape[1]
    assert torch.allclose(covariance, torch.eye(12), atol=0.05)
    assert torch.equal(net.whiten.weight[12:], -net.whiten.weight[:12])


def test_triangle_schedule() -> None:
    factors = [_triangle(s, steps=100) for s in range(101)]
    assert factors[0] == pytest.approx(0.2) and factors[23] == pytest.approx(1.0)
    assert factors[100] == pytest.approx(0.07) and max(factors) == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:23], factors[1:24], strict=True))
    assert all(a >= b for a, b in zip(factors[23:-1], factors[24:], strict=True))


def test_batchnorm_biases_get_their_own_learning_rate() -> None:
    module = ImageClassifier(FastNet(widths=(8, 16, 16)), lr=0.5, weight_decay=0.01, bias_lr_scale=64.0)
    others, biases = module._param_groups()
    norm_biases = {id(m.bias) for m in module.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in biases["params"]} == norm_biases
    assert norm_biases.isdisjoint(id(p) for p in others["params"])
    assert biases["lr"] == 32.0 and biases["weight_decay"] == pytest.approx(0.01 / 64)
    assert len(ImageClassifier(FastNet(widths=(8, 16, 16)))._param_groups()) == 1


def test_tta_averages_views_only_in_eval_mode() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    plain = ImageClassifier(FastNet(widths=(8, 16, 16)), channels_last=False).eval()
    mirror = ImageClassifier(FastNet(widths=(8, 16, 16)), channels_last=False, tta=1).eval()
    shifts = ImageClassifier(FastNet(widths=(8, 16, 16)), channels_last=False, tta=2).eval()
    for module in (mirror, shifts):
        module.load_state_dict(plain.state_dict())
    expected = 0.5 * (plain(x) + plain(x.flip(-1)))
    assert torch.allclose(mirror(x), expected, atol=1e-6)
    assert not torch.allclose(shifts(x), expected, atol=1e-4)
    shifts.train()
    torch.manual_seed(1)
    a = shifts(x)
    plain.train()
    torch.manual_seed(1)
    assert torch.allclose(a, plain(x), atol=1e-6)  # training never averages views


def test_lookahead_pulls_weights_towards_their_average() -> None:
    module = nn.Linear(2, 2)
    look = Lookahead(decay=0.5, every=1)
    look.average = [t.detach().clone() for t in look._tensors(module)]
    before = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.add_(1.0)
    look._sync(module, 0.5)
    assert torch.allclose(module.weight, before + 0.5) and torch.allclose(look.average[0], before + 0.5)
    with pytest.raises(ValueError, match="decay"):
        Lookahead(decay=1.0)


def test_fast_config_trains_tests_and_ends_on_the_average(cifar_root: Path, in_tmp: Path) -> None:
    cli = run_lightning_cli(
        [
            "fit",
            "--config",
            FAST,
            f"--data.data_dir={cifar_root}",
            "--data.batch_size=32",
            "--trainer.max_epochs=2",
            SMALL,
            *QUIET,
        ]  # fmt: skip
    )
    look = next(c for c in cli.trainer.callbacks if isinstance(c, Lookahead))
    tensors = look._tensors(cli.model)
    assert all(torch.equal(a, t) for a, t in zip(look.average, tensors, strict=True))
    assert "test_acc" in cli.trainer.callback_metrics
    ckpt = torch.load(Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    saved = ckpt["state_dict"]["model.head.weight"]
    assert torch.equal(saved, cli.model.model.head.weight.detach())  # the checkpoint holds the averaged weights
    state = next(v for k, v in ckpt["callbacks"].items() if k.startswith("Lookahead"))
    assert len(state["average"]) == len(tensors)
