"""The reference side: a PyTorch model's logits, layer output and pytorch-grad-cam's maps.

Needs `grad-cam` (pytorch-grad-cam) importable: call `torchvision_standin.install()` first where
torchvision does not import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

LIBRARY_METHODS = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
}
"""The project's method ids and pytorch-grad-cam's classes."""

Reshape = Callable[[torch.Tensor], torch.Tensor] | None


def logits(model: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(inputs).numpy()


def layer_output(model: nn.Module, layer: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """What `layer` outputs for `inputs`, as PyTorch lays it out (no reshape)."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise AssertionError(f"the target layer ran {len(seen)} times in one forward pass")
    return seen[0].numpy()


def library_maps(
    model: nn.Module,
    layer: nn.Module,
    reshape: Reshape,
    method: str,
    inputs: torch.Tensor,
    targets: Sequence[int],
) -> np.ndarray:
    """pytorch-grad-cam's raw map of `method` for each input and target class: its weighted
    sum at the layer's resolution after the ReLU, before scaling ([n, h, w])."""
    cam = LIBRARY_METHODS[method](model=model, target_layers=[layer], reshape_transform=reshape)
    try:
        wanted = [ClassifierOutputTarget(int(t)) for t in targets]
        cam(input_tensor=inputs, targets=wanted)
        captured = cam.activations_and_grads
        activations = captured.activations[0].numpy()
        gradients = captured.gradients[0].numpy()
        raw = cam.get_cam_image(inputs, layer, wanted, activations, gradients, False)
    finally:
        cam.activations_and_grads.release()
    return np.maximum(raw, 0.0)
