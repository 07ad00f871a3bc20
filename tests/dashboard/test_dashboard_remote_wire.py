"""The dashboard's runs against a server that is not on this machine's loopback: JPEG frames,
and raw frames again for a model exported before encoded frames existed.

The server is reached at the far end of a veth pair (`network_link`, a namespace this test
makes), so the address is not a loopback one while the traffic stays on this machine.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter

import pytest
from media import write_clip
from served_models import TINY
from triton_server import running_triton

from gradcam_client.remote.server import GradcamServer
from gradcam_client.remote.wire import Wire, is_local
from gradcam_dashboard import jobs, servers
from gradcam_server.triton_config import ServingOptions, build_config, config_text

pytestmark = pytest.mark.integration

OLD = "tiny-old"


@pytest.fixture(scope="module")
def old_and_new(model_repository, triton, tmp_path_factory):
    """A Triton serving `tiny` and `tiny-old`: the same SavedModel, with the config an export
    made before encoded frames and top-k answers would have (raw frames only)."""
    repository = tmp_path_factory.mktemp("old-and-new")
    shutil.copytree(model_repository / TINY, repository / TINY)
    shutil.copytree(model_repository / TINY, repository / OLD)
    info = GradcamServer(triton.urls.grpc, TINY).model_info()
    old = dataclasses.replace(info, name=OLD, encoded_frames=False, top_k=0)
    options = ServingOptions(max_batch_size=info.max_batch_size)
    (repository / OLD / "config.pbtxt").write_text(config_text(build_config(old, options)))
    with running_triton(repository, log_dir=tmp_path_factory.mktemp("old-logs")) as server:
        yield server


def test_a_remote_server_gets_jpeg_frames_and_an_old_model_raw_ones(
    network_link, old_and_new, tmp_path, monkeypatch
):
    sent: Counter[str] = Counter()
    encode = Wire.encode
    monkeypatch.setattr(
        Wire,
        "encode",
        lambda self, frames: sent.update({self.format: len(frames)}) or encode(self, frames),
    )
    clip = write_clip(tmp_path / "clip.mp4", n_frames=8, size=(64, 48))
    target = f"{network_link.host_address}:{old_and_new.urls.grpc.rsplit(':', 1)[1]}"
    with network_link.delayed(target, 0, public=True) as url:
        assert not is_local(url)
        new = servers.job_server(url, TINY)
        made = jobs.run(new, jobs.RunRequest(model=TINY), clip, tmp_path / "new", False)
        old = servers.job_server(url, OLD)
        made_old = jobs.run(old, jobs.RunRequest(model=OLD), clip, tmp_path / "old", False)
    assert new.wire == Wire("jpeg", automatic=True) and made.frames == 8
    assert old.wire == Wire("raw") and made_old.frames == 8
    assert sent == {"jpeg": 8}  # the old model's frames went raw
    assert made_old.output.is_file() and made_old.predictions.is_file()
