"""Normalising raw Grad-CAM maps to [0, 1], temporal smoothing, and a flicker metric.

The server returns raw maps: ReLU'd, unnormalised, at the explained layer's resolution (7x7,
14x14, ...), possibly all zero. Before a map can be colour-mapped it is divided by a maximum.
*Which* maximum is the normalisation scope (`Scope`):

- ``frame``: each map divided by its own maximum. Every frame is shown at full contrast, so a
  weak, diffuse frame (the model is unsure, the map is mostly noise) is blown up to the same
  brightness as a confident one: the video flickers. Deliberately *not* min-max: ReLU'd maps
  already have their floor at 0, and subtracting the minimum would additionally stretch a flat,
  weak map into a full-range one.
- ``clip``: one maximum for the whole clip. Brightness is comparable across frames (the
  steadiest choice), but the maximum must be known before the first frame is composed. The raw
  maps are tiny (a 7x7 float32 map is 196 bytes, an hour of 30 fps video about 21 MB), so the
  client keeps them while the server streams, computes the maximum with `clip_maximum`, then
  composes: pass that value as ``Normalizer(Scope.CLIP, maximum=...)``.
- ``running``: a causal running maximum that rises at once to a stronger frame and otherwise
  decays slowly (multiplied by ``decay`` each frame), so contrast adapts to the clip without
  needing a first pass and without jumping from frame to frame.
- ``fixed``: a maximum chosen by the user (e.g. from an earlier clip of the same model).

All normalisers take a map of shape ``(h, w)`` or a stack ``(..., h, w)`` (e.g. the
``[n_methods, h, w]`` tensor of one layer); each map of a stack has its own maximum. Division is
guarded with ``eps``: an all-zero map is valid and stays all zero, never NaN. A map holding NaN
or infinity is refused (ValueError), never silently zeroed. Output is float32 in [0, 1].

Temporal smoothing (`TemporalSmoother`) is an exponential moving average of the *raw* maps,
applied before normalising. `flicker` measures the mean absolute frame-to-frame change of a
sequence of normalised maps, to compare scopes and pick defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import Enum

import numpy as np

EPS = 1e-8
"""Default division guard: maxima below it count as an all-zero map."""

DEFAULT_DECAY = 0.98
"""Default per-frame decay of the running maximum (half-life of about 34 frames).

With `DEFAULT_SMOOTHING` it cuts flicker to 0.34-0.41 of per-frame min-max normalisation while
keeping a correlation of at least 0.92 with the per-frame maps (bench/explanation_quality.py).
"""

DEFAULT_SMOOTHING = 0.7
"""Default EMA strength on the raw maps (a lag of about 1.6 frames on a panning clip)."""


class Scope(str, Enum):
    """Over what the maximum a map is divided by is taken."""

    FRAME = "frame"
    CLIP = "clip"
    RUNNING = "running"
    FIXED = "fixed"

    @classmethod
    def parse(cls, value: Scope | str) -> Scope:
        """A scope from itself or its name; a clear ValueError on an unknown name."""
        if isinstance(value, Scope):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise ValueError(
                f"unknown normalisation scope {value!r}; choose one of: {choices}"
            ) from None


def _as_maps(cam: np.ndarray) -> np.ndarray:
    """Float32 copy of a map or stack of maps; ValueError if it holds NaN or infinity."""
    arr = np.array(cam, dtype=np.float32, copy=True)
    if arr.ndim < 2 or arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"expected a map of shape (h, w) or (..., h, w); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(
            "a map holding NaN or infinity cannot be normalised (its peak would be lost); "
            "raw maps from the server are finite"
        )
    return arr


def map_peak(cam: np.ndarray) -> np.ndarray:
    """Maximum of each map (over the last two axes), floored at 0."""
    return np.maximum(_as_maps(cam).max(axis=(-2, -1)), 0.0)


def normalize_map(
    cam: np.ndarray, maximum: float | np.ndarray | None = None, eps: float = EPS
) -> np.ndarray:
    """``cam / max(maximum, eps)`` clipped to [0, 1], as float32.

    ``maximum`` defaults to the map's own maximum (per map of a stack); an array maximum has
    one value per map (the stack's leading shape). An all-zero map gives all zeros.
    """
    arr = _as_maps(cam)
    peak = arr.max(axis=(-2, -1)) if maximum is None else np.asarray(maximum, dtype=np.float32)
    denom = np.maximum(peak, np.float32(eps))[..., None, None]
    np.divide(arr, denom, out=arr, casting="unsafe")
    return np.clip(arr, 0.0, 1.0, out=arr)


def clip_maximum(maps: Iterable[np.ndarray], percentile: float = 100.0) -> np.ndarray:
    """The clip-scope maximum of a sequence of raw maps, for ``Normalizer(Scope.CLIP, ...)``.

    One value per map of a stack (a 0-d array for plain ``(h, w)`` maps). With ``percentile``
    below 100 it is that percentile of the per-frame maxima, so a single outlier frame does not
    dim the whole clip (the frames above it saturate). Keeps one float per frame and map.
    Raises ValueError on an empty sequence.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100]; got {percentile}")
    peaks = [map_peak(cam) for cam in maps]
    if not peaks:
        raise ValueError("clip_maximum needs at least one map")
    if percentile == 100.0:
        return np.max(np.stack(peaks), axis=0).astype(np.float32)
    return np.percentile(np.stack(peaks), percentile, axis=0).astype(np.float32)


def decay_for_half_life(frames: float) -> float:
    """The running-scope ``decay`` under which the held maximum halves in ``frames`` frames."""
    if not frames > 0:
        raise ValueError(f"half-life must be a positive number of frames; got {frames}")
    return 0.5 ** (1.0 / frames)


class Normalizer:
    """Streaming normaliser: feed raw maps frame by frame, get [0, 1] maps back.

    ``maximum`` is required for the ``clip`` scope (from `clip_maximum`) and the ``fixed``
    scope (a user value), and unused otherwise. ``decay`` in (0, 1] parameterises the
    ``running`` scope: the held maximum is ``max(peak, decay * held)``, starting from the first
    frame's peak; 1 never decays (a causal all-time maximum). State is one float per map.
    """

    def __init__(
        self,
        scope: Scope | str = Scope.FRAME,
        *,
        maximum: float | np.ndarray | None = None,
        decay: float = DEFAULT_DECAY,
        eps: float = EPS,
    ) -> None:
        self.scope = Scope.parse(scope)
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a positive finite number; got {eps!r}")
        if not (isinstance(decay, (int, float)) and 0.0 < decay <= 1.0):
            raise ValueError(f"decay must be in (0, 1]; got {decay!r}")
        self.eps = float(eps)
        self.decay = float(decay)
        self._fixed: np.ndarray | None = None
        if self.scope in (Scope.CLIP, Scope.FIXED):
            if maximum is None:
                hint = "from clip_maximum()" if self.scope is Scope.CLIP else "a positive value"
                raise ValueError(f"scope {self.scope.value!r} needs maximum= ({hint})")
            fixed = np.asarray(maximum, dtype=np.float32)
            if not np.isfinite(fixed).all() or (fixed < 0).any():
                raise ValueError(f"maximum must be finite and non-negative; got {maximum!r}")
            if self.scope is Scope.FIXED and not (fixed > 0).all():
                raise ValueError(f"a fixed maximum must be positive; got {maximum!r}")
            self._fixed = fixed
        self._held: np.ndarray | None = None

    @property
    def maximum(self) -> np.ndarray | None:
        """The maximum the last map was divided by (``None`` before the first frame)."""
        return self._held

    def reset(self) -> None:
        """Forget the running state (start of a new clip)."""
        self._held = None

    def __call__(self, cam: np.ndarray) -> np.ndarray:
        """Normalise the next map (or stack of maps) of the stream."""
        arr = _as_maps(cam)
        if self.scope in (Scope.CLIP, Scope.FIXED):
            assert self._fixed is not None
            held = np.broadcast_to(self._fixed, arr.shape[:-2]).astype(np.float32)
        else:
            peak = np.maximum(arr.max(axis=(-2, -1)), 0.0)
            if self.scope is Scope.FRAME or self._held is None:
                held = peak
            else:
                if self._held.shape != peak.shape:
                    raise ValueError(
                        f"map stack changed shape mid-stream: {self._held.shape} -> {peak.shape}"
                    )
                held = np.maximum(peak, np.float32(self.decay) * self._held)
        self._held = held
        return normalize_map(arr, held, self.eps)


class TemporalSmoother:
    """Exponential moving average of raw maps, fed frame by frame (apply before normalising).

    ``s_1 = x_1`` and ``s_t = alpha * s_(t-1) + (1 - alpha) * x_t``, with ``alpha`` in [0, 1):
    0 turns smoothing off, larger values smooth more (and lag more). The first frame is taken
    as is rather than blended with zeros, so the clip does not fade in. A map holding NaN or
    infinity is refused (ValueError) before it can poison the state.
    """

    def __init__(self, alpha: float = 0.0) -> None:
        if not (isinstance(alpha, (int, float)) and 0.0 <= alpha < 1.0):
            raise ValueError(f"smoothing alpha must be in [0, 1) (0 = off); got {alpha!r}")
        self.alpha = float(alpha)
        self._state: np.ndarray | None = None

    @property
    def state(self) -> np.ndarray | None:
        """The last smoothed map (``None`` before the first frame)."""
        return self._state

    def reset(self) -> None:
        """Forget the state (start of a new clip)."""
        self._state = None

    def __call__(self, cam: np.ndarray) -> np.ndarray:
        """Smooth the next raw map; returns a new float32 array."""
        arr = _as_maps(cam)
        if self._state is not None and self.alpha > 0.0:
            if self._state.shape != arr.shape:
                raise ValueError(
                    f"map shape changed mid-stream: {self._state.shape} -> {arr.shape}"
                )
            arr = np.float32(self.alpha) * self._state + np.float32(1.0 - self.alpha) * arr
        self._state = arr
        return arr.copy()
