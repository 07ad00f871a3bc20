"""A comparison in a background thread (`compare_media`), with the file mode's progress,
outage notice and stop (`runner.FramesRun`), and the files it made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gradcam_client.compare.job import compare_media
from gradcam_client.compare.plan import ComparePlan
from gradcam_client.compare.results import CompareSummary
from gradcam_client.remote.server import GradcamServer, RetryNotice
from gradcam_dashboard.background import Phase
from gradcam_dashboard.compare_models import CompareRequest
from gradcam_dashboard.runner import FramesRun

PairFactory = Callable[[Callable[[RetryNotice], None]], tuple[GradcamServer, GradcamServer]]
"""Makes the clients of models A and B, given the function that hears of failed requests."""


@dataclass
class CompareOutput:
    """The files and figures of a finished comparison."""

    request: CompareRequest
    plan: ComparePlan
    source: Path
    folder: Path
    output: Path  # A | B side by side (MP4, or PNG for an image)
    predictions: Path  # JSON lines: both predictions and the agreement, per frame
    summary_path: Path
    maps: tuple[Path, Path]  # each side's raw maps (NPZ)
    summary: CompareSummary
    is_image: bool
    frames: int
    seconds: float
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class CompareRun(FramesRun):
    """One comparison in a daemon thread; `result` is a `CompareOutput` once done."""

    what = "comparison"

    def __init__(
        self,
        make_servers: PairFactory,
        request: CompareRequest,
        plan: ComparePlan,
        source: Path,
        folder: Path,
        is_image: bool,
        max_frames: int | None = None,
        finish: Callable[[CompareOutput], None] | None = None,
    ) -> None:
        super().__init__(source, folder, is_image, max_frames)
        self.make_servers = make_servers
        self.request = request
        self.plan = plan
        self.finish = finish
        self.result: CompareOutput | None = None

    def _run(self) -> None:
        """Compare into the folder: compare.mp4 (.png for an image), compare.jsonl,
        compare.json, a.npz and b.npz."""
        self.folder.mkdir(parents=True, exist_ok=True)
        pair = self.make_servers(self._on_retry)
        maps = (self.folder / "a.npz", self.folder / "b.npz")
        try:
            result = compare_media(
                *pair,
                self.source,
                self.folder / ("compare.png" if self.is_image else "compare.mp4"),
                self.request.job_settings(),
                predictions=self.folder / "compare.jsonl",
                summary=self.folder / "compare.json",
                maps=maps,
                progress=self._progress(Phase.RUNNING),
                cancel=self.cancel,
            )
            output = CompareOutput(
                request=self.request,
                plan=self.plan,
                source=self.source,
                folder=self.folder,
                output=result.output,
                predictions=result.predictions,
                summary_path=result.summary_path,
                maps=result.maps or maps,
                summary=result.summary,
                is_image=self.is_image,
                frames=result.frames,
                seconds=result.seconds,
            )
            self._progressed(Phase.FINISHING)
            if self.finish is not None:
                self.finish(output)
            self.result = output
        finally:
            for server in pair:
                server.close()
