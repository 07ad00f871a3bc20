"""Exception types of the client.

Every error meant for the user derives from `GradcamError` and has a one-line message, so a
command line can print ``str(error)`` and exit. The hierarchy is small on purpose::

    GradcamError
    ├── Cancelled               the caller stopped the job (its cancel event was set)
    ├── InputError              a file or argument given by the user is unusable
    │   ├── MediaNotFoundError      the file does not exist (or is not a regular file)
    │   ├── EmptyMediaError         the file has zero bytes
    │   ├── NotMediaError           not a video or image (e.g. a text file named .mp4)
    │   ├── TruncatedMediaError     the file ends early (interrupted copy or recording)
    │   ├── NoVideoStreamError      a media file without video (e.g. audio only)
    │   ├── NoFramesError           a video stream without a single decodable frame
    │   ├── CorruptFrameError       a frame failed to decode and skipping was not allowed
    │   └── SourceError             a live source cannot be opened or sends nothing
    ├── OutputError             an output file cannot be written
    └── ServerError             the inference server failed or is unreachable
        ├── ServerUnavailable       no answer (down, wrong URL, timeout)
        │   └── ServerBusy              the server's queue stayed full until the deadline
        ├── RequestRejected         the server answered with an error
        ├── InvalidResponse         the server's answer is unusable (e.g. a map holding NaN)
        ├── TlsError                the TLS handshake failed (an untrusted certificate)
        └── ModelNotFound           the server does not serve the requested model
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "Cancelled",
    "CorruptFrameError",
    "EmptyMediaError",
    "GradcamError",
    "InputError",
    "InvalidResponse",
    "MediaNotFoundError",
    "ModelNotFound",
    "NoFramesError",
    "NoVideoStreamError",
    "NotMediaError",
    "OutputError",
    "RequestRejected",
    "ServerBusy",
    "ServerError",
    "ServerUnavailable",
    "SourceError",
    "TlsError",
    "TruncatedMediaError",
]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class GradcamError(Exception):
    """Base class of the errors the client reports to its user."""


class Cancelled(GradcamError):
    """The job was stopped by its caller before it was complete."""


class _PathError(GradcamError):
    """An error about a file: the message is ``"<path>: <problem>"``."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = _one_line(problem)
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {self.problem}" if path is not None else self.problem)


class InputError(_PathError):
    """An input (file or argument) is unusable."""


class MediaNotFoundError(InputError):
    """The input file does not exist or is not a regular file."""


class EmptyMediaError(InputError):
    """The input file is empty (zero bytes)."""


class NotMediaError(InputError):
    """The input is not a video or image that FFmpeg or OpenCV can read."""


class TruncatedMediaError(InputError):
    """The input ends early: part of the file is missing."""


class NoVideoStreamError(InputError):
    """The input is a media file without a video stream (e.g. audio only)."""


class NoFramesError(InputError):
    """The input has a video stream but no frame of it can be decoded."""


class CorruptFrameError(InputError):
    """A frame could not be decoded and the reader was told to stop on corrupt frames."""

    def __init__(
        self, problem: str, path: str | Path | None = None, *, index: int, time: float | None
    ) -> None:
        super().__init__(problem, path)
        self.index = index
        self.time = time


class SourceError(InputError):
    """A live source (a network stream or a camera) cannot be opened, or sends no video."""


class OutputError(_PathError):
    """An output file cannot be written."""


class ServerError(GradcamError):
    """The inference server failed, refused the request or cannot be reached."""


class ServerUnavailable(ServerError):
    """The server cannot be reached (down, wrong URL, timeout)."""


class ServerBusy(ServerUnavailable):
    """The server kept refusing requests because its queue was full, until the deadline."""


class RequestRejected(ServerError):
    """The server answered a request with an error."""


class InvalidResponse(ServerError):
    """The server answered, but with data no client can use: the server's (or model's) fault."""


class TlsError(ServerError):
    """The TLS handshake failed: the server's certificate is not trusted or names another host."""


class ModelNotFound(ServerError):
    """The server does not serve the requested model (or version)."""
