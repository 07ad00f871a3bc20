"""Explanation quality on the real served model: Grad-CAM is more faithful than noise."""

from __future__ import annotations

import cv2
import map_quality as quality
import numpy as np
import pytest
from served_models import EFFNET

from gradcam_client.media.samples import photo
from gradcam_client.remote.server import GradcamServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = 8
RANDOM_SEEDS = range(3)


def test_gradcam_beats_random_maps_on_deletion_auc_for_chelsea(triton):
    server = GradcamServer(triton.urls.grpc, EFFNET)
    info = server.model_info()
    frame = cv2.resize(
        photo("chelsea"), (info.input_width, info.input_height), interpolation=cv2.INTER_AREA
    )
    result = server.infer(frame[None], np.array([-1]))
    target = int(result.class_index[0])
    cam = result.maps[info.layer_names[0]][0, list(info.methods).index("gradcam")]

    def predict(frames: np.ndarray) -> np.ndarray:
        return server.infer(frames, np.full(len(frames), -1)).probabilities

    substrate = quality.blurred(frame)

    def deletion_auc(saliency: np.ndarray) -> float:
        curve = quality.deletion_curve(
            frame, saliency, predict, target, steps=STEPS, substrate=substrate
        )
        assert curve.scores[0] == pytest.approx(result.probabilities[0, target], abs=1e-4)
        return curve.auc

    gradcam = deletion_auc(cam)
    randoms = [deletion_auc(quality.random_map(cam.shape, seed)) for seed in RANDOM_SEEDS]
    assert gradcam < min(randoms), (gradcam, randoms)
    assert gradcam < np.mean(randoms) - 0.05, (gradcam, randoms)
