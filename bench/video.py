"""Batch on a video against batch on the same frames as images, frames per second.

Usage: python bench/video.py [--frames 120] [--size 640x480] [--imgsz 320] [--rounds 3]

The bundled sample images (data/sample/boards), resized to `--size`, make
`--frames` frames; they are written once as JPEG files (quality 95) and once as
a Motion JPEG AVI at 25 fps, the same pixels in both. A random-init YOLO11n
exported to ONNX at `--imgsz` (throughput does not depend on the weights)
predicts them through `predict_folder` with the same settings (batch 8, auto
threads): the images, the video with faces not blurred (a like-for-like
comparison: images are not blurred), and the video as configured by default
(faces blurred in the written video). Each round runs the three interleaved;
the best wall time of `--rounds` per variant gives frames per second, and the
ratio video / images is the figure to read (goal >= 0.9x without blurring).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("YOLO_OFFLINE", "1")

from visionops.batch.predict import predict_folder  # noqa: E402
from visionops.config import BatchSettings, VideoSettings  # noqa: E402
from visionops.engine.onnx import export_onnx  # noqa: E402
from visionops.tasks import get_task  # noqa: E402

SAMPLE = ROOT / "data" / "sample" / "boards"


def frames(count: int, size: tuple[int, int]) -> list:
    images = sorted(p for p in SAMPLE.rglob("*.jpg"))
    pictures = [cv2.resize(cv2.imread(str(p)), size) for p in images[:count]]
    return [pictures[i % len(pictures)] for i in range(count)]


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-video-"))
    os.chdir(work)  # Ultralytics writes beside the working directory
    from ultralytics import YOLO

    model = YOLO("yolo11n.yaml")
    weights = work / "random.pt"
    model.save(weights)
    onnx = export_onnx(weights, args.imgsz, work / "onnx")

    pictures = frames(args.frames, size)
    images, videos = work / "images", work / "video"
    images.mkdir()
    videos.mkdir()
    for index, picture in enumerate(pictures):
        cv2.imwrite(
            str(images / f"{index:05d}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
    writer = cv2.VideoWriter(
        str(videos / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, size
    )
    for picture in pictures:
        writer.write(picture)
    writer.release()

    task = get_task("detect")
    variants = {
        "images (JPEG files)": (images, BatchSettings()),
        "video, faces not blurred": (
            videos,
            BatchSettings(video=VideoSettings(blur_faces=False)),
        ),
        "video, faces blurred (default)": (videos, BatchSettings()),
    }
    best = dict.fromkeys(variants, float("inf"))
    for round_ in range(args.rounds):
        for name, (source, settings) in variants.items():
            start = time.perf_counter()
            predictions = predict_folder(
                source,
                onnx,
                work / f"out-{round_}-{len(name)}",
                settings,
                task=task,
                progress=False,
            )
            best[name] = min(best[name], time.perf_counter() - start)
            summary = predictions.summary
            done = summary["predicted"] + summary.get("videos", {}).get(
                "frames_predicted", 0
            )
            assert done == args.frames, (name, done)

    base = args.frames / best["images (JPEG files)"]
    print(
        f"{datetime.date.today()}, {cpu_name()}, {os.cpu_count()} cores; "
        f"{args.frames} frames {args.size}, YOLO11n ONNX at {args.imgsz} px, "
        f"best of {args.rounds}"
    )
    print("| variant | frames/s | vs images |")
    print("|---|---|---|")
    for name, seconds in best.items():
        fps = args.frames / seconds
        print(f"| {name} | {fps:.1f} | {fps / base:.2f}x |")


if __name__ == "__main__":
    main()
