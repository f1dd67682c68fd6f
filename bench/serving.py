"""Serving, per task: raw ONNX Runtime FP32 and INT8, the served endpoint, PyTorch.

Usage: python bench/serving.py [--tasks detect,classify,segment] [--imgsz PX]
    [--demo-imgsz PX] [--classify-imgsz PX] [--rounds N] [--runs N]
    [--levels 1,4,16] [--seconds S]

For each task, in a throwaway state folder and on the same model and images: a
random-init yolo11n of the task (`yolo11n.yaml`, `-cls`, `-seg`; latency does not
depend on the weights) exported to ONNX, quantized to static INT8 with
`visionops.engine.quantize.quantize` (calibrated on the task's bundled sample images, as
deployment does on the validation split), the INT8 model stored with
`save_model` and built with `build_bento` as deployment does, and served with
`bentoml serve` in the service's own configuration (one worker per core, one
ONNX Runtime thread each). The uploads are the task's bundled sample images
(`data/sample/`). Detection runs at `--imgsz` and at the demo's `--demo-imgsz`.

Measured at one client, in interleaved rounds (A, B, C, ..., A, B, C, ...: load on
a shared machine hits every path alike), `--runs` calls per path per round:

- ONNX Runtime `session.run` on a prepared blob, FP32 and INT8, with one thread
  (as in one served worker) and with one thread per core;
- decode + the task's `predict` in this process, INT8, one thread: what the
  served request does, without HTTP; and `record` alone on the same predictions
  (`visionops.feedback.records.Recorder.record`, the default policies, into the
  throwaway state folder);
- the served endpoint (`/detect`, `/classify`, `/segment`), one request at a time
  on a keep-alive connection, with the server's own `timing_ms` stages;
- `/info` (the HTTP + BentoML floor: no image, no model);
- Ultralytics' PyTorch `YOLO.predict` of the same image, at one thread (equal to
  one served request's) and at one per core.

Overhead = served p50 - (decode + predict) p50, per round, median over rounds.

Recording, on and off: after the rounds (once the images the policies kept were
blurred and written, and their hourly caps are full, as in a service's steady
state), decode + predict alternates call by call with decode + predict + record,
`--rounds` x `--runs` pairs; the cost is p50(on) - p50(off), beside the median
of the pairs' differences and `record`'s own p50.
Speed-ups are ratios of p50s per round, median over rounds.

Throughput: answered images/s of the served endpoint at each `--levels`
concurrency (`bench/harness.py`'s load generator: keep-alive connections, one
asyncio loop, its CPU per request printed since it shares the cores), and of
`/detect_batch` calls of 8 images from one client per core, against raw:
decode + predict with no HTTP in one process per core, one thread each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
# The bundled sample each task is measured on, and the model architecture.
TASKS = {
    "detect": ("boards", "yolo11n.yaml"),
    "classify": ("chest-xray", "yolo11n-cls.yaml"),
    "segment": ("shoe-soles", "yolo11n-seg.yaml"),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BATCH_IMAGES = 8  # images per `/detect_batch` call
RECORD = "record alone (Recorder.record, same predictions)"


def _timed(function, inputs: list, runs: int, warmup: int = 2) -> list[float]:
    for item in inputs[:warmup]:
        function(item)
    samples = []
    for i in range(runs):
        item = inputs[i % len(inputs)]
        start = time.perf_counter()
        function(item)
        samples.append(time.perf_counter() - start)
    return samples


class Bench:
    """One task at one size: its models, its server, its measurements."""

    def __init__(self, task_name: str, imgsz: int, work: Path, args) -> None:
        import cv2
        from ultralytics import YOLO

        from visionops.engine.onnx import export_onnx
        from visionops.engine.quantize import quantize
        from visionops.serving.bento import build_bento, save_model
        from visionops.tasks import get_task

        self.args, self.imgsz = args, imgsz
        self.task = get_task(task_name)
        folder, architecture = TASKS[task_name]
        images = sorted(
            p
            for p in (SAMPLE / folder).rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
        )
        self.paths = images[:16]
        self.uploads = [(p.name, p.read_bytes()) for p in self.paths]
        self.frames = [cv2.imread(str(p)) for p in self.paths]
        work.mkdir(parents=True)
        self.weights = work / architecture.replace(".yaml", ".pt")
        YOLO(architecture).save(str(self.weights))
        self.onnx = {"FP32": export_onnx(self.weights, imgsz, out_dir=work)}
        fp32 = self.task.predictor(self.onnx["FP32"])
        self.onnx["INT8"] = quantize(
            self.onnx["FP32"],
            images[-32:],  # calibration: the sample's last images
            work / "model.int8.onnx",
            preprocess=fp32.preprocess,
        )
        name = f"bench-{task_name}"
        lineage = {"task": task_name, "precision": "int8", "model_name": name}
        tag = save_model(name, self.onnx["INT8"], self.weights, lineage)
        self.bento = str(build_bento(tag, lineage).tag)
        self.model = YOLO(str(self.weights))
        # The endpoint's own parameters at their defaults (a classifier's top_k).
        self.parameters = {
            k: getattr(v[1], "default", v[1])
            for k, v in self.task.serving().parameters.items()
        }
        self.rows: dict[str, list[float]] = {}
        self.per_round: dict[str, list[float]] = {}
        self.stages: dict[str, list[float]] = {}

    def one_client(self, server: harness.Server) -> None:
        """The interleaved rounds at one client."""
        import torch

        from visionops.feedback.features import Featurizer
        from visionops.feedback.records import Recorder
        from visionops.feedback.store import FeedbackStore
        from visionops.serving.limits import decode_image

        cores = os.cpu_count() or 1
        threads = sorted({1, cores})
        predictors = {
            (p, t): self.task.predictor(path, threads=t)
            for p, path in self.onnx.items()
            for t in threads
        }
        blobs = [predictors["FP32", 1].preprocess(f) for f in self.frames]
        endpoint = f"/{self.task.name}"
        requests = [
            harness.upload_request(server.port, endpoint, "image", [u])
            for u in self.uploads
        ]
        client = harness.Client(server.port)
        torch_default = torch.get_num_threads()

        def session_run(precision: str, t: int):
            predictor = predictors[precision, t]
            return lambda blob: predictor.session.run(
                None, {predictor.input_name: blob}
            )

        def in_process(upload: tuple[str, bytes]) -> None:
            self.task.predict(predictors["INT8", 1], [decode_image(upload[1])])

        # As the service records: its default policies, the task's answer made
        # only for a kept image, kept images blurred and every image's drift
        # features computed by the recorder's thread.
        names = predictors["INT8", 1].names
        recorder = Recorder(
            self.task,
            names,
            {"name": "bench", "version": "1", "bento": self.bento},
            store=FeedbackStore(self.weights.parent / "feedback"),
            featurizer=Featurizer(
                self.task, self.onnx["INT8"], predictor=predictors["INT8", 1]
            ),
        )

        def record(frame, result, name: str) -> None:
            recorder.record(
                f"service:{endpoint}",
                frame,
                result,
                name=name,
                latency_ms=1.0,
                answer=lambda: self.task.answer(result, names, **self.parameters),
            )

        def in_process_recorded(upload: tuple[str, bytes]) -> None:
            frame = decode_image(upload[1])
            (result,) = self.task.predict(predictors["INT8", 1], [frame])
            record(frame, result, upload[0])

        predicted = [
            (frame, self.task.predict(predictors["INT8", 1], [frame])[0], name)
            for frame, (name, _) in zip(self.frames, self.uploads, strict=True)
        ]

        def served(request: bytes) -> None:
            status, body = client.send(request)
            if status != 200:
                raise RuntimeError(f"{endpoint} answered {status}: {body[:300]!r}")
            for key, value in json.loads(body)["timing_ms"].items():
                self.stages.setdefault(key, []).append(value)

        def info(_: object) -> None:
            status, body = client.send(harness.json_request(server.port, "/info"))
            if status != 200:
                raise RuntimeError(f"/info answered {status}: {body[:300]!r}")

        def torch_predict(t: int):
            def run(frame) -> None:
                if torch.get_num_threads() != t:  # in the warm-up calls
                    torch.set_num_threads(t)
                self.model.predict(frame, imgsz=self.imgsz, device="cpu", verbose=False)

            return run

        paths = {
            **{
                f"ONNX Runtime session.run, {p}, {t} thread(s)": (
                    session_run(p, t),
                    blobs,
                )
                for p in ("FP32", "INT8")
                for t in threads
            },
            "decode + predict in process, INT8, 1 thread": (in_process, self.uploads),
            RECORD: (lambda item: record(*item), predicted),
            f"served {endpoint}, INT8, round trip": (served, requests),
            "served /info round trip (no image)": (info, [None]),
            **{
                f"PyTorch YOLO.predict, {t} thread(s)": (torch_predict(t), self.frames)
                for t in threads
            },
        }
        try:
            for label in paths:
                self.rows[label], self.per_round[label] = [], []
            for _ in range(self.args.rounds):
                for label, (function, inputs) in paths.items():
                    kept = {k: len(v) for k, v in self.stages.items()}
                    samples = _timed(function, inputs, self.args.runs)
                    for key, values in self.stages.items():  # drop the warm-up's
                        del values[kept.get(key, 0) : kept.get(key, 0) + 2]
                    self.rows[label] += samples
                    self.per_round[label].append(statistics.median(samples))
            recorder.close()  # the kept images' blurring is not timed below
            self.paired = self.recording_pairs(in_process, in_process_recorded)
        finally:
            client.close()
            torch.set_num_threads(torch_default)
            recorder.close()
        self.recording = recorder.status()

    def recording_pairs(self, off, on) -> tuple[list[float], list[float]]:
        """Times `off` and `on` call by call, alternating which goes first."""
        times: tuple[list[float], list[float]] = ([], [])
        for i in range(self.args.rounds * self.args.runs):
            upload = self.uploads[i % len(self.uploads)]
            order = ((0, off), (1, on)) if i % 2 else ((1, on), (0, off))
            for index, function in order:
                start = time.perf_counter()
                function(upload)
                times[index].append(time.perf_counter() - start)
        return times

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median over the rounds of the ratio of two paths' p50s."""
        pairs = zip(self.per_round[numerator], self.per_round[denominator], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def difference_ms(self, minuend: str, subtrahend: str) -> float:
        """Median over the rounds of the difference of two paths' p50s, in ms."""
        pairs = zip(self.per_round[minuend], self.per_round[subtrahend], strict=True)
        return statistics.median(a - b for a, b in pairs) * 1000

    def run(self) -> dict:
        """Serves the Bento, measures, stops it; returns the summary row."""
        server = harness.serve(self.bento, self.weights.parent)
        try:
            self.one_client(server)
            endpoint = f"/{self.task.name}"
            requests = [
                harness.upload_request(server.port, endpoint, "image", [u])
                for u in self.uploads
            ]
            loads = [
                harness.load(server.port, requests, n, self.args.seconds)
                for n in self.args.levels
            ]
            batched = None
            if self.task.name == "detect":  # several images per call
                cores = os.cpu_count() or 1
                batch_requests = [
                    harness.upload_request(
                        server.port,
                        "/detect_batch",
                        "images",
                        self.uploads[i : i + BATCH_IMAGES],
                    )
                    for i in range(0, len(self.uploads), BATCH_IMAGES)
                ]
                batched = harness.load(
                    server.port, batch_requests, cores, self.args.seconds
                )
        finally:
            server.stop()
        raw = harness.raw_throughput(
            self.task.name,
            self.onnx["INT8"],
            [data for _, data in self.uploads],
            self.args.seconds,
        )
        return self.report(loads, batched, raw)

    def report(
        self, loads: list[harness.Load], batched: harness.Load | None, raw: float
    ) -> dict:
        """Prints this task's tables; returns its summary row."""
        cores = os.cpu_count() or 1
        endpoint = f"/{self.task.name}"
        served = f"served {endpoint}, INT8, round trip"
        local = "decode + predict in process, INT8, 1 thread"
        print(f"\n## {self.task.name}, {self.imgsz} px\n")
        print("| path (one client) | p50 ms | p95 ms |\n|---|---:|---:|")
        for label, samples in self.rows.items():
            p50, p95 = harness.p50_p95(samples)
            print(f"| {label} | {p50:.1f} | {p95:.1f} |")
        stages = ", ".join(
            f"{k} {statistics.median(v):.2f}" for k, v in self.stages.items()
        )
        print(f"\nserver `timing_ms` p50: {stages}")
        overhead = self.difference_ms(served, local)
        off, on = self.paired
        recording = (statistics.median(on) - statistics.median(off)) * 1000
        paired = statistics.median(b - a for a, b in zip(off, on, strict=True)) * 1000
        record_p50 = statistics.median(self.rows[RECORD]) * 1000
        kept = self.recording
        print(
            f"recording on - off ({len(on)} alternated pairs of decode + predict "
            f"[+ record]): p50 {statistics.median(on) * 1000:.2f} - "
            f"{statistics.median(off) * 1000:.2f} = {recording:.3f} ms, median pair "
            f"difference {paired:.3f} ms; record alone p50 {record_p50:.3f} ms (goal "
            f"<= 0.5); {kept['recorded']} recorded, {kept['selected']} kept, "
            f"{kept['dropped']} dropped, {kept['failed']} failed, "
            f"{kept['featured']} with drift features ({kept['unfeatured']} without)"
        )
        speedups = {
            t: self.ratio(f"PyTorch YOLO.predict, {t} thread(s)", served)
            for t in sorted({1, cores})
        }
        int8 = {
            t: self.ratio(
                f"ONNX Runtime session.run, FP32, {t} thread(s)",
                f"ONNX Runtime session.run, INT8, {t} thread(s)",
            )
            for t in sorted({1, cores})
        }
        print(
            f"overhead (served - decode + predict): {overhead:.1f} ms (goal <= 5); "
            + "; ".join(
                f"PyTorch predict at {t} thread(s) / served INT8: {r:.2f}x"
                for t, r in speedups.items()
            )
            + " (goal >= 2.5x at 1); "
            + "; ".join(
                f"INT8 over FP32 session.run at {t} thread(s): {r:.2f}x"
                for t, r in int8.items()
            )
        )
        print(
            "\n| clients | served img/s | p50 ms | p95 ms | non-200 | "
            "load generator CPU ms/request |\n|---:|---:|---:|---:|---:|---:|"
        )
        for result in loads:
            p50, p95 = harness.p50_p95(result.latencies)
            print(
                f"| {result.clients} | {result.per_second:.1f} | {p50:.1f} | "
                f"{p95:.1f} | {result.failed} | {result.client_cpu_ms:.2f} |"
            )
        if batched is not None:
            p50, p95 = harness.p50_p95(batched.latencies)
            print(
                f"| {batched.clients}, /detect_batch of {BATCH_IMAGES} images | "
                f"{batched.per_second * BATCH_IMAGES:.1f} | {p50:.1f} | {p95:.1f} | "
                f"{batched.failed} | {batched.client_cpu_ms:.2f} per call |"
            )
        top = loads[-1]
        print(
            f"\nraw decode + predict, no HTTP, {cores} process(es) x 1 thread: "
            f"{raw:.1f} img/s; served at {top.clients} clients / raw: "
            f"{top.per_second / raw:.2f} (goal >= 0.9)"
        )
        return {
            "task": f"{self.task.name} {self.imgsz} px",
            "served": harness.p50_p95(self.rows[served])[0],
            "local": harness.p50_p95(self.rows[local])[0],
            "overhead": overhead,
            "recording": recording,
            "record": record_p50,
            "torch": speedups[1],
            "int8": int8[1],
            "throughput": top.per_second,
            "raw": raw,
        }


def main() -> None:
    """Measures every task and prints its tables, then the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="detect,classify,segment")
    parser.add_argument("--imgsz", type=int, default=640, help="detect, segment")
    parser.add_argument("--demo-imgsz", type=int, default=160, help="detect; 0: no")
    parser.add_argument("--classify-imgsz", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=10, help="calls per path/round")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="per level")
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",")]
    state = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    os.environ["VISIONOPS_STATE_DIR"] = str(state)
    import onnxruntime
    import torch

    import visionops  # noqa: F401  (offline environment, state in `state`)

    runs = []
    for name in args.tasks.split(","):
        if name == "classify":
            runs.append((name, args.classify_imgsz))
        else:
            runs.append((name, args.imgsz))
            if name == "detect" and args.demo_imgsz:
                runs.append((name, args.demo_imgsz))
    print(
        f"{datetime.date.today()}, {os.cpu_count()} CPU cores, random-init yolo11n "
        f"per task, {args.rounds} interleaved rounds x {args.runs} calls per path, "
        f"{args.seconds:.0f} s per concurrency level (ONNX Runtime "
        f"{onnxruntime.__version__}, torch {torch.__version__})"
    )
    summary = []
    try:
        for name, size in runs:
            bench = Bench(name, size, state / f"{name}-{size}", args)
            summary.append(bench.run())
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(
        "\n## Summary\n\n| task | served p50 ms | decode + predict p50 ms "
        "| overhead ms | recording on - off ms | record p50 ms "
        "| PyTorch predict (1 thread) / served INT8 "
        "| INT8 / FP32 speed-up | served "
        f"img/s @{args.levels[-1]} | raw img/s | served / raw |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in summary:
        print(
            f"| {row['task']} | {row['served']:.1f} | {row['local']:.1f} | "
            f"{row['overhead']:.1f} | {row['recording']:.2f} | {row['record']:.3f} | "
            f"{row['torch']:.2f}x | {row['int8']:.2f}x | "
            f"{row['throughput']:.1f} | {row['raw']:.1f} | "
            f"{row['throughput'] / row['raw']:.2f} |"
        )


if __name__ == "__main__":
    main()
