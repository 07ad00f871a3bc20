"""A comparison in a background thread (`compare_media`), with the file mode's progress,
outage notice and stop (`runner.FramesRun`), and the files it made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gradcam_client.compare import compare_media
from gradcam_client.compare_plan import ComparePlan
from gradcam_client.compare_results import CompareSummary
from gradcam_client.triton import GradcamServer, RetryNotice
from gradcam_dashboard.background import FINISHING, RUNNING
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


def output_name(is_image: bool) -> str:
    return "compare.png" if is_image else "compare.mp4"


def run_comparison(
    servers: tuple[GradcamServer, GradcamServer],
    request: CompareRequest,
    plan: ComparePlan,
    source: Path,
    folder: Path,
    is_image: bool,
    progress: Callable[[int, int | None], None],
    cancel,
) -> CompareOutput:
    """Compare `source` into `folder` (compare.mp4, compare.jsonl, compare.json, a.npz, b.npz)."""
    maps = (folder / "a.npz", folder / "b.npz")
    result = compare_media(
        *servers,
        source,
        folder / output_name(is_image),
        request.job_settings(),
        predictions=folder / "compare.jsonl",
        summary=folder / "compare.json",
        maps=maps,
        progress=progress,
        cancel=cancel,
    )
    return CompareOutput(
        request=request,
        plan=plan,
        source=source,
        folder=folder,
        output=result.output,
        predictions=result.predictions,
        summary_path=result.summary_path,
        maps=result.maps or maps,
        summary=result.summary,
        is_image=is_image,
        frames=result.frames,
        seconds=result.seconds,
    )


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
        self.folder.mkdir(parents=True, exist_ok=True)
        pair = self.make_servers(self._on_retry)
        try:
            result = run_comparison(
                pair,
                self.request,
                self.plan,
                self.source,
                self.folder,
                self.is_image,
                self._progress(RUNNING),
                self.cancel,
            )
            self._set_phase(FINISHING)
            if self.finish is not None:
                self.finish(result)
            self.result = result
        finally:
            for server in pair:
                server.close()
