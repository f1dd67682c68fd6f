"""Video files with OpenCV: probing, decoding frames with a stride, writing them."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# What OpenCV's FFmpeg reads here (batch inputs).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
# Why a video is bad (`VideoError.reason`).
ZERO_BYTE = "zero_byte"
UNREADABLE = "unreadable"
TRUNCATED = "truncated"
UNSUPPORTED_CODEC = "unsupported_codec"
NO_FRAMES = "no_frames"
TOO_LARGE = "too_large"
# Writers tried in order, the first this OpenCV build opens wins: H.264 MP4 (what
# browsers play), MPEG-4 Part 2 MP4, then Motion JPEG AVI (always built in).
WRITERS = (("avc1", ".mp4"), ("mp4v", ".mp4"), ("MJPG", ".avi"))
_HEAD = 1 << 20  # bytes of a file searched for its codec when OpenCV fails


class VideoError(ValueError):
    """A video that cannot be read, with a reason (a constant above) and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container declares.

    Attributes:
        fps: Frames per second (0 when the container does not say).
        frames: The declared frame count (an estimate for some containers).
        width: Frame width, pixels.
        height: Frame height, pixels.
        codec: The codec's four characters.
    """

    fps: float
    frames: int
    width: int
    height: int
    codec: str


def _fourcc(value: float) -> str:
    raw = (int(value) & 0xFFFFFFFF).to_bytes(4, "little")
    return raw.decode("ascii", "replace").strip("\x00 ") or "?"


def _cut_short(path: Path) -> bool:
    """Whether the container declares more bytes than the file holds (RIFF, MP4)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        if head[:4] == b"RIFF":
            return struct.unpack("<I", head[4:8])[0] + 8 > size
        if head[4:8] != b"ftyp":
            return False
        offset = 0
        while offset + 8 <= size:  # top-level MP4 boxes, each `size type`
            handle.seek(offset)
            box, kind = struct.unpack(">I4s", handle.read(8))
            if box == 1:
                box = struct.unpack(">Q", handle.read(8))[0]
            elif box == 0:
                return False  # extends to the end of the file
            if box < 8:
                return True
            offset += box
            if kind == b"moov" and offset <= size:
                return False
        return True  # no complete `moov`: the index never arrived


def _declared_codec(path: Path) -> str | None:
    """The video codec an AVI or MP4 names in its header, if it names one."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD)
    for tag, skip in ((b"vids", 4), (b"stsd", 16)):  # AVI strh, MP4 sample entry
        at = head.find(tag)
        if at >= 0 and len(head) >= at + skip + 4:
            return head[at + skip : at + skip + 4].decode("ascii", "replace")
    return None


def _why_unopened(path: Path) -> VideoError:
    """Why OpenCV could not open a file: the container's own account of itself."""
    if path.stat().st_size == 0:
        return VideoError(ZERO_BYTE, "the file is empty")
    if _cut_short(path):
        return VideoError(
            TRUNCATED, "the file stops before its end (no index); copy it again"
        )
    codec = _declared_codec(path)
    if codec:
        return VideoError(
            UNSUPPORTED_CODEC,
            f"codec {codec!r} is not one OpenCV's FFmpeg decodes; convert it to "
            "H.264 MP4",
        )
    return VideoError(UNREADABLE, "not a video OpenCV reads (mp4, avi, mov, mkv, webm)")


def open_video(path: Path, max_pixels: int | None = None) -> tuple[Any, VideoInfo]:
    """Opens a video for decoding, checking what it declares first.

    Args:
        path: The file.
        max_pixels: Refuse frames of more pixels than this (None: no limit).

    Returns:
        The `cv2.VideoCapture` and what the container declares.

    Raises:
        VideoError: `zero_byte`, `truncated`, `unsupported_codec`, `unreadable`,
            `too_large` (before any frame is decoded).
    """
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise _why_unopened(path)
    info = VideoInfo(
        fps=max(0.0, float(capture.get(cv2.CAP_PROP_FPS) or 0.0)),
        frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        codec=_fourcc(capture.get(cv2.CAP_PROP_FOURCC)),
    )
    pixels = info.width * info.height
    if max_pixels is not None and pixels > max_pixels:
        capture.release()
        raise VideoError(
            TOO_LARGE,
            f"{info.width}x{info.height} frames ({pixels / 1e6:.1f} Mpx) are over "
            f"the limit of {max_pixels / 1e6:.1f} Mpx per frame",
        )
    return capture, info


@dataclass
class Frame:
    """One decoded frame: its index in the video, its time and its pixels."""

    index: int
    time_s: float
    image: np.ndarray


class FrameReader:
    """The frames of an opened video, every `stride`-th, with what was decoded.

    Attributes:
        info: What the container declares.
        read: Frames decoded or skipped (the video's frames seen so far).
    """

    def __init__(self, capture: Any, info: VideoInfo, stride: int = 1) -> None:
        """Reads from `capture` (from `open_video`); it is released at the end."""
        self.capture, self.info, self.stride = capture, info, max(1, stride)
        self.read = 0

    def __iter__(self) -> Iterator[Frame]:
        try:
            while True:
                # grab() demuxes and decodes without converting: cheap for a skip.
                if not self.capture.grab():
                    return
                index, self.read = self.read, self.read + 1
                if index % self.stride:
                    continue
                ok, image = self.capture.retrieve()
                if not ok or image is None:
                    return
                if self.info.fps > 0:
                    time_s = index / self.info.fps
                else:
                    time_s = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
                yield Frame(index, round(time_s, 3), image)
        finally:
            self.capture.release()

    def shortfall(self) -> VideoError | None:
        """After reading: `no_frames` or `truncated` when fewer frames decoded than
        the container declared (a frame's slack for estimated counts)."""
        if self.read == 0:
            if self.info.frames > 0:
                return VideoError(
                    TRUNCATED,
                    f"0 of {self.info.frames} declared frames decoded; the file "
                    "stops before its frames",
                )
            return VideoError(NO_FRAMES, "the video holds no frame")
        if self.read < self.info.frames - 1:
            return VideoError(
                TRUNCATED,
                f"{self.read} of {self.info.frames} declared frames decoded (those "
                "were predicted); the file stops early, copy it again",
            )
        return None


@cache
def writable_format() -> tuple[str, str]:
    """The first of `WRITERS` this OpenCV build writes (probed once): codec, suffix."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for codec, suffix in WRITERS:
            path = Path(folder) / f"probe{suffix}"
            writer = cv2.VideoWriter(
                str(path), cv2.VideoWriter_fourcc(*codec), 10, (64, 64)
            )
            ok = writer.isOpened()
            if ok:
                writer.write(np.zeros((64, 64, 3), np.uint8))
            writer.release()
            if ok and path.is_file() and path.stat().st_size > 0:
                return codec, suffix
    return WRITERS[-1]


def video_writer(stem: Path, fps: float, width: int, height: int) -> tuple[Any, Path]:
    """A `cv2.VideoWriter` for `<stem>.mp4` (or `.avi`, see `writable_format`).

    Raises:
        OSError: OpenCV cannot open the file for writing.
    """
    codec, suffix = writable_format()
    path = stem.with_name(stem.name + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*codec), fps or 25.0, (width, height)
    )
    if not writer.isOpened():
        raise OSError(f"could not write {path} ({codec})")
    return writer, path
