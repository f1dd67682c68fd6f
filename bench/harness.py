"""What the serving benchmarks share: a served Bento, a cheap load generator, p50s.

The load generator is what `wrk` is to a web server: HTTP/1.1 keep-alive
connections on one asyncio loop, each request's bytes encoded once beforehand,
answers read by their `Content-Length`. The clients share the server's cores on
this machine, so a client that spends milliseconds of CPU per request (building
multipart bodies, parsing JSON, one Python thread each) would be measured as
server slowness; this one spends a fraction of a millisecond, and reports it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
SERVICE_NAME = "visionops"  # the `@bentoml.service` name, for BENTOML_CONFIG_OPTIONS
BOUNDARY = "benchboundary7d3f"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def p50_p95(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 of durations in seconds, in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


@dataclass
class Server:
    """A `bentoml serve` process group and its URL."""

    process: subprocess.Popen
    url: str
    port: int

    def stop(self) -> None:
        """Stops the server and its workers (its own process group)."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def serve(
    bento: str,
    log_dir: Path,
    workers: int | None = None,
    requests: int | None = None,
    timeout: float = 180.0,
) -> Server:
    """Serves `bento` with `bentoml serve` on a free loopback port until `/readyz`.

    Args:
        bento: The Bento's tag.
        log_dir: Where the server's log goes.
        workers: Overrides the service's worker processes.
        requests: Overrides how many requests a worker runs at once (BentoML's
            `threads` for sync endpoints).
        timeout: Seconds to wait for `/readyz`.

    Raises:
        RuntimeError: the server exited or was not ready in time (its log's tail).
    """
    from visionops.serving.bento import server_command

    port = free_port()
    options = {"workers": workers, "threads": requests}
    env = dict(os.environ)
    env["BENTOML_CONFIG_OPTIONS"] = " ".join(  # after the caller's own options
        [env.get("BENTOML_CONFIG_OPTIONS", "")]
        + [
            f'services."{SERVICE_NAME}".{key}={value}'
            for key, value in options.items()
            if value is not None
        ]
    ).strip()
    log_path = log_dir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(bento, port),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://{HOST}:{port}", port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"bentoml serve exited:\n{tail}")
        try:
            with urllib.request.urlopen(f"{server.url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"bentoml serve was not ready in {timeout:.0f} s: {log_path}")


def upload_request(
    port: int, path: str, field: str, files: list[tuple[str, bytes]]
) -> bytes:
    """The bytes of a keep-alive multipart POST of `files` (name, bytes) in
    `field`, as a browser sends it."""
    body = (
        b"".join(
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
            for name, data in files
        )
        + f"--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def json_request(port: int, path: str, body: bytes = b"{}") -> bytes:
    """The bytes of a keep-alive JSON POST."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _raw_worker(job: tuple[str, str, list[bytes], float]) -> int:
    """One process: decode + predict with one thread until the deadline."""
    task_name, onnx, datas, seconds = job
    import visionops  # noqa: F401  (offline environment)
    from visionops.serving.limits import decode_image
    from visionops.tasks import get_task

    task = get_task(task_name)
    predictor = task.predictor(Path(onnx), threads=1)
    task.predict(predictor, [decode_image(datas[0])])
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        task.predict(predictor, [decode_image(datas[done % len(datas)])])
        done += 1
    return done


def raw_throughput(task: str, onnx: Path, datas: list[bytes], seconds: float):
    """Images/s of decode + predict in one process per core, one thread each."""
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        done = pool.map(_raw_worker, [(task, str(onnx), datas, seconds)] * cores)
    return sum(done) / seconds


class Connection:
    """One keep-alive HTTP/1.1 connection: send prepared bytes, read one answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """Connects to the server on `port`."""
        return cls(*await asyncio.open_connection(HOST, port))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Sends one request; returns the status and the body of its answer.

        Raises:
            ConnectionError: the server closed the connection, or answered in a
                way this client does not read (no `Content-Length`).
        """
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise ConnectionError(f"an answer without Content-Length: {lines[0]}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        """Closes the connection."""
        self.writer.close()


@dataclass
class Load:
    """What `load` measured at one concurrency level."""

    clients: int
    answered: int
    failed: int
    seconds: float
    latencies: list[float]
    client_cpu_s: float

    @property
    def per_second(self) -> float:
        """Answered requests per second."""
        return self.answered / self.seconds

    @property
    def client_cpu_ms(self) -> float:
        """The load generator's CPU milliseconds per answered request."""
        return self.client_cpu_s * 1000 / max(self.answered, 1)


def load(port: int, requests: list[bytes], clients: int, seconds: float) -> Load:
    """`clients` connections, each sending the next prepared request as soon as
    its previous one is answered, for `seconds` (after one warm-up request each).

    A non-200 answer counts as failed (and is not timed).
    """

    async def run() -> Load:
        connections = [await Connection.open(port) for _ in range(clients)]
        for i, connection in enumerate(connections):  # warm up, one at a time
            await connection.send(requests[i % len(requests)])
        latencies: list[float] = []
        failed = 0
        deadline = time.perf_counter() + seconds

        async def client(index: int, connection: Connection) -> None:
            nonlocal failed
            i = index
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                status, _ = await connection.send(requests[i % len(requests)])
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    failed += 1
                i += clients

        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        for connection in connections:
            connection.close()
        return Load(clients, len(latencies), failed, wall, latencies, cpu)

    return asyncio.run(run())


class Client:
    """One keep-alive connection used synchronously: one request at a time,
    between other work (the interleaved one-client rounds)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.connection = self.loop.run_until_complete(Connection.open(port))

    def send(self, request: bytes) -> tuple[int, bytes]:
        """Sends one request; the status and body of its answer.

        A connection the server closed while idle (uvicorn's keep-alive timeout
        is 5 s) is opened again, as HTTP clients do.
        """
        try:
            return self.loop.run_until_complete(self.connection.send(request))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.connection.close()
            self.connection = self.loop.run_until_complete(Connection.open(self.port))
            return self.loop.run_until_complete(self.connection.send(request))

    def close(self) -> None:
        """Closes the connection and its loop."""
        self.connection.close()
        self.loop.close()
