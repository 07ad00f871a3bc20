"""Video and images in and out: reading (`media.reader`) and writing (`media.writer`), in one
import.

Modelled on supervision's ``utils/video.py``: `VideoInfo` describes a file, `open_media` /
`iter_frames` yield its frames, `VideoWriter` is the sink; drawing code never touches files.
"""

from __future__ import annotations

from gradcam_client.media.frames import DecodeReport, Frame, SkippedFrame, VideoInfo
from gradcam_client.media.reader import (
    MediaReader,
    iter_frames,
    open_media,
    probe,
    read_image,
    read_timestamps,
)
from gradcam_client.media.writer import MP4_COPY_AUDIO_CODECS, VideoWriter, write_image

__all__ = [
    "MP4_COPY_AUDIO_CODECS",
    "DecodeReport",
    "Frame",
    "MediaReader",
    "SkippedFrame",
    "VideoInfo",
    "VideoWriter",
    "iter_frames",
    "open_media",
    "probe",
    "read_image",
    "read_timestamps",
    "write_image",
]
