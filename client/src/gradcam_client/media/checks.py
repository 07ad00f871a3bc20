"""What a media file is, and why it cannot be read: checks made before and after decoding.

FFmpeg's own message is used where it is clear; MP4/QuickTime and Matroska files cut short
(an interrupted download or recording) are recognised from their box or segment sizes, which
names the problem at once instead of FFmpeg's "Invalid data found when processing input" or a
silent early end.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.error

from gradcam_client.errors import (
    EmptyMediaError,
    InputError,
    MediaNotFoundError,
    NotMediaError,
    NoVideoStreamError,
    TruncatedMediaError,
)

_IMAGE_FORMATS = ("image2", "image2pipe")
_HEAD_BYTES = 4096


def check_file(path: Path) -> int:
    """Raise if `path` is not a non-empty regular file; return its size."""
    if not path.exists():
        raise MediaNotFoundError("no such file", path)
    if not path.is_file():
        raise MediaNotFoundError("not a regular file", path)
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as error:
        raise InputError(f"cannot be read ({error.strerror or error})", path) from error
    if size == 0:
        raise EmptyMediaError("file is empty (0 bytes)", path)
    return size


def file_head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(_HEAD_BYTES)


def _looks_like_text(head: bytes) -> bool:
    """True when the first bytes of a file are printable text (UTF-8)."""
    if not head or b"\x00" in head:
        return False
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") + sum(1 for c in text if not c.isprintable() and c not in "\r\n\t")
    return bad <= max(2, len(text) // 100)


_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftyp", "MP4/QuickTime"),
    (4, b"moov", "QuickTime"),
    (4, b"mdat", "QuickTime"),
    (4, b"wide", "QuickTime"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"RIFF", "RIFF (AVI/WAV/WebP)"),
    (0, b"OggS", "Ogg"),
    (0, b"FLV", "FLV"),
    (0, b"\x00\x00\x01\xba", "MPEG program stream"),
    (0, b"\x00\x00\x01\xb3", "MPEG video"),
    (0, b"\x30\x26\xb2\x75", "ASF/WMV"),
    (0, b"\x89PNG", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"GIF8", "GIF"),
)


def _container_name(head: bytes) -> str | None:
    """Name of the container recognised from the file signature, if any."""
    for offset, magic, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "MPEG transport stream"
    return None


def _bmff_truncation(path: Path, size: int, strict: bool) -> str | None:
    """Why an MP4/QuickTime file looks truncated (a top-level box runs past the end), or None.

    With `strict` false only the boxes that hold the media (mdat, moov, moof) count, so trailing
    garbage after a valid file is not mistaken for truncation.
    """
    seen = set()
    with path.open("rb") as file:
        pos = 0
        while pos + 8 <= size:
            file.seek(pos)
            header = file.read(16)
            box_size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if box_size == 1:
                if len(header) < 16:
                    return f"the '{kind}' box header is cut off"
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - pos
            if box_size < 8 or not kind.isprintable():
                break  # not a box structure we understand: let FFmpeg judge
            seen.add(kind)
            if pos + box_size > size and (strict or kind in ("mdat", "moov", "moof")):
                missing = pos + box_size - size
                return f"the '{kind}' box ends {missing} bytes past the end of the file"
            pos += box_size
    if strict and not seen & {"moov", "moof"}:
        return "its index ('moov' box, written when a recording finishes) is missing"
    return None


def _read_vint(data: bytes, pos: int) -> tuple[int | None, int]:
    """Decode an EBML variable-size integer at `pos`: (value or None if unknown, length)."""
    if pos >= len(data) or data[pos] == 0:
        return None, 1
    length = 8 - data[pos].bit_length() + 1
    value = data[pos] & (0xFF >> length)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    if value == (1 << (7 * length)) - 1:
        return None, length  # "unknown size" (live recordings)
    return value, length


def _ebml_truncation(head: bytes, size: int) -> str | None:
    """Why a Matroska/WebM file looks truncated (the segment runs past the end), or None."""
    header_size, n = _read_vint(head, 4)
    if header_size is None:
        return None
    pos = 4 + n + header_size
    if head[pos : pos + 4] != b"\x18\x53\x80\x67":
        return None
    segment_size, n = _read_vint(head, pos + 4)
    if segment_size is None:
        return None
    end = pos + 4 + n + segment_size
    if end > size:
        return f"the Matroska segment ends {end - size} bytes past the end of the file"
    return None


def truncation(path: Path, size: int, head: bytes, strict: bool = False) -> str | None:
    """Why the file structure says it is truncated, or None (only MP4/QuickTime, Matroska)."""
    try:
        if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
            return _bmff_truncation(path, size, strict)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _ebml_truncation(head, size)
    except OSError:
        return None
    return None


def ffmpeg_reason(error: Exception) -> str:
    """The FFmpeg error text without the errno and file name decorations."""
    if isinstance(error, av.error.FFmpegError) and error.strerror:
        return error.strerror
    return str(error)


def _unreadable(path: Path, size: int, error: Exception) -> InputError:
    """The error to raise when FFmpeg cannot open a file at all."""
    head = file_head(path)
    truncated = truncation(path, size, head, strict=True)
    container = _container_name(head)
    if truncated:
        return TruncatedMediaError(f"truncated {container or 'media'} file: {truncated}", path)
    if container:
        return TruncatedMediaError(
            f"damaged or truncated {container} file ({ffmpeg_reason(error)})", path
        )
    if _looks_like_text(head):
        return NotMediaError("is a text file, not a video or image", path)
    return NotMediaError(
        f"not a video or image format FFmpeg can read ({ffmpeg_reason(error)})", path
    )


FILE_ONLY = {"protocol_whitelist": "file"}
"""FFmpeg options of a local file: what it names (a playlist's or a concat list's entries)
may only be other local files, never a network address."""


def open_input(path: Path, formats: str | None = None) -> tuple[av.container.InputContainer, int]:
    """Open a file with PyAV, turning failures into specific input errors.

    formats: FFmpeg's demuxers allowed (comma-separated names), None for any; a file of
        another kind is refused as one FFmpeg cannot read.
    """
    size = check_file(path)
    options = dict(FILE_ONLY)
    if formats is not None:
        options["format_whitelist"] = formats
    try:
        return av.open(str(path), options=options, metadata_errors="replace"), size
    except av.error.FFmpegError as error:
        raise _unreadable(path, size, error) from error


def codec_name(stream: av.stream.Stream) -> str:
    """Canonical codec name ("mp3", "av1"), not the name of the decoder FFmpeg picked."""
    return stream.codec_context.codec.canonical_name


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.VideoStream:
    """The first video stream that is not cover art, or NoVideoStreamError."""
    attached = av.stream.Disposition.attached_pic
    for stream in container.streams.video:
        if not stream.disposition & attached:
            return stream
    kinds = [f"{s.type} ({codec_name(s)})" for s in container.streams if s.codec_context]
    if container.streams.video:
        kinds.append("cover art only")
    found = ", ".join(kinds) if kinds else "no streams at all"
    raise NoVideoStreamError(f"has no video stream (found: {found})", path)


def is_image_container(container: av.container.InputContainer) -> bool:
    """True for FFmpeg's still-image demuxers (png_pipe, jpeg_pipe, image2, ...)."""
    name = container.format.name
    return name in _IMAGE_FORMATS or name.endswith("_pipe")
