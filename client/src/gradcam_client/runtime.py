"""Process-wide settings for streaming frames, made once before the first frame.

A job decodes, sends, composes and encodes on threads of its own already, so the libraries'
own worker threads only add their hand-offs and their spinning after each small operation;
and buffers of a megabyte or more are allocated for every request and frame, which glibc's
malloc would hand back to the kernel and fault in again each time (see "Where the client's
time goes" in `bench/README.md`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from functools import cache

import cv2
from threadpoolctl import threadpool_limits

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks below this size come from malloc's heap (glibc's largest allowed value)."""
TRIM_THRESHOLD = 128 << 20
"""Freed memory malloc keeps for the next blocks before handing it back to the kernel."""


@cache
def prepare_for_frames() -> None:
    """OpenCV and numpy's BLAS compute on the thread that calls them, and glibc's malloc keeps
    freed blocks for the next frame (for the whole process; once)."""
    cv2.setNumThreads(1)
    threadpool_limits(1, user_api="blas")
    keep_freed_memory()


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks of up to `MMAP_THRESHOLD` instead of mapping
    fresh pages for each (every page of a fresh block is a page fault and a zeroed page);
    False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):
        return False
