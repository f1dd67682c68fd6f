"""Batch over videos: frames decoded, predicted as images are, tracked, written back.

Per video: its frames (every one, or `video.fps` / `video.stride`) go through the
same ONNX predictor and thresholds as the batch's images, `settings.batch` at a
time; the task's `VideoOutput` turns each frame's prediction into CSV rows (with
track ids for tasks with boxes) and draws it. The annotated video (faces blurred
by default) and a contact sheet land in `videos/`, every video's rows in
`video_predictions.csv`, its tracks in `video_tracks.csv`. A video that cannot be
read gets a reason for `bad_files.csv` and the rest goes on.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from visionops.batch.grid import cell, fit, grid_indices, write_grid
from visionops.config import BatchSettings
from visionops.core.files import CsvWriter
from visionops.core.video import (
    Frame,
    FrameReader,
    VideoError,
    open_video,
    video_writer,
)
from visionops.engine.task import Task, side_file_paths
from visionops.engine.video import FRAME_COLUMNS, TRACK_COLUMNS, VideoOutput

VIDEO_CSV = "video_predictions.csv"
TRACKS_CSV = "video_tracks.csv"
VIDEOS_DIR = "videos"
SHEET_SUFFIX = ".sheet.jpg"
_TIMELINE_POINTS = 120  # points of the counts-over-time plot per video
_DONE = object()  # the end of a queue


def predict_videos(
    videos: Sequence[Path],
    folder: Path,
    out_dir: Path,
    *,
    task: Task,
    predictor: Any,
    settings: BatchSettings,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Predicts every frame of each video; writes the video outputs under `out_dir`.

    Args:
        videos: The video files, under `folder`.
        folder: What their paths are relative to in the outputs.
        out_dir: The batch run's output folder.
        task: The model's task.
        predictor: `task.predictor(...)`, shared with the images.
        settings: The batch settings (thresholds, batch size, `video`).
        progress: Show a tqdm bar per video.

    Returns:
        One JSON record per video predicted, and the bad videos as
        `{"file", "reason", "detail"}` (a truncated video may be in both: its
        frames before the cut are predicted).
    """
    names = [predictor.names[i] for i in sorted(predictor.names)]
    thresholds = {k: getattr(settings, k) for k in task.thresholds}
    stems = side_file_paths(list(videos), folder, VIDEOS_DIR, "")
    records: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []
    if not videos:
        return records, bad
    with (
        (out_dir / VIDEO_CSV).open("w", newline="") as table,
        (out_dir / TRACKS_CSV).open("w", newline="") as tracks,
    ):
        rows, track_rows = CsvWriter(table), CsvWriter(tracks)
        output_columns = task.video_output(names, settings.video.tracker).columns
        rows.writerow((*FRAME_COLUMNS, *output_columns))
        track_rows.writerow(TRACK_COLUMNS)
        for path, stem in zip(videos, stems, strict=True):
            relative = path.relative_to(folder).as_posix()
            try:
                record, output = _predict_video(
                    path,
                    relative,
                    out_dir,
                    stem,
                    task=task,
                    predictor=predictor,
                    names=names,
                    thresholds=thresholds,
                    settings=settings,
                    write=lambda r, rel=relative: rows.writerow((rel, *r)),
                    progress=progress,
                )
            except VideoError as err:
                bad.append(
                    {"file": relative, "reason": err.reason, "detail": err.detail}
                )
                continue
            shortfall = record.pop("shortfall")
            if shortfall is not None:
                bad.append(
                    {
                        "file": relative,
                        "reason": shortfall.reason,
                        "detail": shortfall.detail,
                    }
                )
            if record["frames_predicted"]:
                track_rows.writerows((relative, *t) for t in output.track_rows())
                records.append(record)
    return records, bad


def video_summary(
    videos_in: int, records: list[dict[str, Any]], bad: list[dict[str, str]]
) -> dict[str, Any]:
    """The videos' headline figures for `summary.json`."""
    frames = sum(r["frames_predicted"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    per_class: Counter[str] = Counter()
    for record in records:
        per_class.update(record["per_class"])
    return {
        "videos_in": videos_in,
        "predicted": len(records),
        "bad": len(bad),
        "bad_reasons": dict(Counter(b["reason"] for b in bad)),
        "frames_predicted": frames,
        "tracks": sum(r["tracks"] for r in records),
        "faces_blurred": sum(r["faces_blurred"] for r in records),
        "per_class": dict(per_class),
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
    }


def _read_ahead(reader: FrameReader, size: int, stop: threading.Event) -> Iterator:
    """The reader's frames decoded on a thread, up to `size` ahead of the caller."""
    frames: queue.Queue = queue.Queue(maxsize=size)

    def fill() -> None:
        try:
            for frame in reader:
                while not stop.is_set():
                    try:
                        frames.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        finally:
            frames.put(_DONE)

    thread = threading.Thread(target=fill, daemon=True, name="video-decode")
    thread.start()
    while (item := frames.get()) is not _DONE:
        yield item
    thread.join()


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Writer:
    """Blurs faces, draws the prediction and writes each frame, on its own thread;
    keeps the contact sheet's cells."""

    def __init__(
        self,
        writer: Any,
        output: VideoOutput,
        blur: bool,
        sheet_picks: set[int],
    ) -> None:
        self.writer, self.output, self.blur = writer, output, blur
        self.sheet_picks = sheet_picks
        self.cells: list[np.ndarray] = []
        self.faces = 0
        self.written = 0
        self.jobs: queue.Queue = queue.Queue(maxsize=64)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="video-write")
        self.done = self.pool.submit(self._run)

    def put(self, frame: Frame, prediction: Any, marks: Any) -> None:
        if self.done.done():  # it failed: raise its error here
            self.done.result()
        self.jobs.put((frame, prediction, marks))

    def close(self) -> None:
        """Waits for every frame to be written; raises what the thread raised."""
        self.jobs.put(_DONE)
        try:
            self.done.result()
        finally:
            self.pool.shutdown()
            self.writer.release()

    def _run(self) -> None:
        from visionops.data.anonymize import AnonymizeSettings, blur_faces

        faces = AnonymizeSettings()
        while (job := self.jobs.get()) is not _DONE:
            frame, prediction, marks = job
            image = frame.image
            if self.blur:
                image, found = blur_faces(image, faces)
                self.faces += found
            drawn = self.output.draw(image, prediction, marks)
            self.writer.write(drawn)
            if self.written in self.sheet_picks:
                caption = f"frame {frame.index}, {frame.time_s:.2f} s"
                self.cells.append(cell(fit(drawn), caption))
            self.written += 1


def _predict_video(
    path: Path,
    relative: str,
    out_dir: Path,
    side: str,
    *,
    task: Task,
    predictor: Any,
    names: list[str],
    thresholds: dict[str, Any],
    settings: BatchSettings,
    write: Callable[[tuple], None],
    progress: bool,
) -> tuple[dict[str, Any], VideoOutput]:
    """One video through the predictor: rows written, video drawn; its record."""
    from tqdm import tqdm

    video = settings.video
    capture, info = open_video(path, video.max_frame_pixels)
    stride = video.stride_for(info.fps)
    reader = FrameReader(capture, info, stride)
    output = task.video_output(names, video.tracker)
    out_fps = info.fps / stride if info.fps > 0 else 25.0 / stride
    stem = out_dir / side
    writer, written = video_writer(stem, out_fps, info.width, info.height)
    expected = math.ceil(info.frames / stride) if info.frames else 0
    drawer = _Writer(
        writer,
        output,
        video.blur_faces,
        grid_indices(expected, video.contact_sheet),
    )
    timeline: list[tuple[float, dict[str, int]]] = []
    per_class: Counter[str] = Counter()
    stop = threading.Event()
    start = time.perf_counter()
    detections = 0
    try:
        with tqdm(
            total=expected or None,
            unit="frame",
            desc=relative[-30:],
            disable=not progress,
            mininterval=1.0,
        ) as bar:
            frames = _read_ahead(reader, 2 * settings.batch, stop)
            for batch in _batches(frames, settings.batch):
                found = task.predict(predictor, [f.image for f in batch], **thresholds)
                for frame, prediction in zip(batch, found, strict=True):
                    result = output.add(
                        frame.index, frame.time_s, frame.image, prediction
                    )
                    for row in result.rows:
                        write((frame.index, frame.time_s, *row))
                    detections += len(result.rows)
                    timeline.append((frame.time_s, result.counts))
                    per_class.update(result.counts)
                    drawer.put(frame, prediction, result.marks)
                bar.update(len(batch))
    finally:
        stop.set()
        drawer.close()
    seconds = time.perf_counter() - start
    sheet = None
    if drawer.cells:
        sheet = stem.with_name(stem.name + SHEET_SUFFIX)
        write_grid(drawer.cells, sheet)
    if not timeline:
        written.unlink(missing_ok=True)
    record = {
        "video": relative,
        "output": written.relative_to(out_dir).as_posix() if timeline else None,
        "contact_sheet": sheet.relative_to(out_dir).as_posix() if sheet else None,
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "fps": round(info.fps, 3),
        "stride": stride,
        "frames_declared": info.frames,
        "frames_read": reader.read,
        "frames_predicted": len(timeline),
        "rows": detections,
        "tracks": len(output.track_rows()),
        "faces_blurred": drawer.faces,
        "per_class": {n: per_class[n] for n in names if per_class[n]},
        "timeline": _timeline(timeline, names),
        "seconds": round(seconds, 3),
        "frames_per_s": round(len(timeline) / seconds, 2) if seconds > 0 else None,
        "shortfall": reader.shortfall(),
    }
    return record, output


def _timeline(
    frames: list[tuple[float, dict[str, int]]], names: list[str]
) -> dict[str, Any]:
    """Counts per class over time: the mean count per frame in up to
    `_TIMELINE_POINTS` equal runs of frames, each at its first frame's time."""
    if not frames:
        return {"time_s": [], "counts": {}}
    seen = [n for n in names if any(c.get(n) for _, c in frames)]
    edges = np.linspace(0, len(frames), min(_TIMELINE_POINTS, len(frames)) + 1)
    bins = [frames[round(a) : round(b)] for a, b in zip(edges, edges[1:], strict=False)]
    bins = [b for b in bins if b]
    return {
        "time_s": [b[0][0] for b in bins],
        "counts": {
            name: [round(sum(c.get(name, 0) for _, c in b) / len(b), 3) for b in bins]
            for name in seen
        },
    }
