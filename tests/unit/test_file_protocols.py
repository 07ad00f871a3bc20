"""Local files open with a file-only protocol whitelist: a playlist or a concat list may name
other local files, never a network address (real FFmpeg, a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from http_files import http_folder
from media import write_clip

from gradcam_client.errors import GradcamError
from gradcam_client.media import open_media


def transport_stream(folder: Path) -> Path:
    """A short clip as one MPEG-TS file (an HLS segment)."""
    clip = write_clip(folder / "clip.mp4", n_frames=10, size=(64, 48))
    segment = folder / "seg.ts"
    with av.open(str(clip)) as source, av.open(str(segment), "w", format="mpegts") as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return segment


def test_a_local_playlist_cannot_reach_the_network(tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    transport_stream(remote)
    with http_folder(remote) as (base, asked):
        playlist = tmp_path / "list.m3u8"
        playlist.write_text(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXTINF:1.0,\n{base}/seg.ts\n#EXT-X-ENDLIST\n"
        )
        with pytest.raises(GradcamError):
            open_media(playlist)
    assert asked == []


def test_a_local_playlist_of_local_files_still_plays(tmp_path):
    transport_stream(tmp_path)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXTINF:1.0,\nseg.ts\n#EXT-X-ENDLIST\n"
    )
    assert sum(1 for _ in open_media(playlist)) == 10
