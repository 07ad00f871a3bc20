"""Process-wide settings for streaming frames (gradcam_client.runtime)."""

from __future__ import annotations

import platform
import resource

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from gradcam_client.runtime import keep_freed_memory, prepare_for_frames


def _faults_of_fresh_blocks(rounds: int, size: int) -> int:
    """Minor page faults while allocating and filling four blocks, then freeing them, as a
    request's buffers are, `rounds` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        blocks = [np.empty(size, np.uint8) for _ in range(4)]
        for block in blocks:
            block.fill(1)
        del blocks, block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_blocks_are_used_again_instead_of_faulted_in_afresh() -> None:
    assert keep_freed_memory()
    size = 3 << 20  # a 1920x1080 yuv420p picture
    _faults_of_fresh_blocks(2, size)  # the heap grows once
    pages = 10 * 4 * size // 4096
    assert _faults_of_fresh_blocks(10, size) < pages // 20


def test_libraries_compute_on_the_calling_thread() -> None:
    prepare_for_frames()
    assert cv2.getNumThreads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
