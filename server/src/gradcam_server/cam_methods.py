"""Class activation map methods, each from the same activations and gradients.

Every function takes the activations ``A`` and the gradients ``G`` of the target class's logit
with respect to them, both shaped ``[batch, h, w, channels]``, and returns ReLU'd, unnormalised
maps ``[batch, h, w]``. Statistics are taken over the spatial axes of each sample only, never
over the batch: a frame's map must not depend on the other frames it is batched with.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

EPSILON = 1e-7
GRADCAMPP_EPSILON = 1e-6
"""Grad-CAM++'s guard in the denominator of its alpha coefficients, as in pytorch-grad-cam.

Gradients are often ~1e-3, so their squares are comparable to the guard: it is part of the
method's definition here, and the library most people use takes 1e-6 (the cross-check tier
compares every map with it).
"""

CamMethod = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _weighted_sum(activations: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """ReLU(sum_k w_k A_k) for per-sample channel weights ``[batch, channels]``."""
    return tf.nn.relu(tf.einsum("bhwk,bk->bhw", activations, weights))


def gradcam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al.): channel weights are the spatially averaged gradients."""
    return _weighted_sum(activations, tf.reduce_mean(gradients, axis=(1, 2)))


def gradcampp(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhay et al.), with the usual exponential-score closed form."""
    grads_2 = tf.square(gradients)
    grads_3 = grads_2 * gradients
    sum_activations = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    alpha = grads_2 / (2.0 * grads_2 + sum_activations * grads_3 + GRADCAMPP_EPSILON)
    # Only positive gradients count (the ReLU below). Where a gradient is negative the
    # denominator can reach 0 (inf * 0 = NaN); pytorch-grad-cam keeps those entries as 0 too.
    alpha = tf.where(gradients > 0.0, alpha, tf.zeros_like(alpha))
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(1, 2))
    return _weighted_sum(activations, weights)


def layercam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Layer-CAM (Jiang et al.): positive gradients weight each location separately."""
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1))


def hirescam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """HiResCAM (Draelos & Carin): element-wise gradient times activation, summed."""
    return tf.nn.relu(tf.reduce_sum(gradients * activations, axis=-1))


def xgradcam(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """XGrad-CAM (Fu et al.): gradients weighted by the normalised activations."""
    sum_activations = tf.reduce_sum(activations, axis=(1, 2))
    weights = tf.reduce_sum(gradients * activations, axis=(1, 2)) / (sum_activations + EPSILON)
    return _weighted_sum(activations, weights)


NEEDS_NONNEGATIVE_ACTIVATIONS = ("gradcampp", "xgradcam")
"""Methods whose channel weights assume activations >= 0 (sums of activations as weights)."""

CAM_METHODS: dict[str, CamMethod] = {
    "gradcam": gradcam,
    "gradcampp": gradcampp,
    "layercam": layercam,
    "hirescam": hirescam,
    "xgradcam": xgradcam,
}


def check_methods(methods: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate method ids, keeping their order and dropping repeats."""
    unknown = [m for m in methods if m not in CAM_METHODS]
    if unknown:
        raise ValueError(f"unknown CAM method(s) {unknown}; choose from {list(CAM_METHODS)}")
    if not methods:
        raise ValueError(f"choose at least one CAM method from {list(CAM_METHODS)}")
    return tuple(dict.fromkeys(methods))
