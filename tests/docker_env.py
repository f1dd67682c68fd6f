"""The Docker engine and the locally built images the Docker tests run on.

No image registry is reachable from the machines this project runs on, so every
image starts from a Debian bookworm root built here with `debootstrap` and imported
as `visionops-base:bookworm` (kept between runs: it is the cache). Python packages
come from wheelhouses downloaded on the host with its pip configuration (under
`.visionops/docker-wheelhouse/` of the checkout, or `VISIONOPS_WHEELHOUSE`; `make
clean` removes it with the rest of `.visionops/`), served over HTTP on 127.0.0.1 for the
length of a build that runs on the host's network (`docker build --network host`):
builds need neither a registry nor this machine's CA bundle, and nothing but
loopback is ever a target. The parent image's wheelhouse (3.5 GB, torch's CUDA
libraries) goes once its image is built; the Bento's (its own packages) is kept.

The disk is the scarce thing here: one parent image is 7.5 GB, so building one for
new requirements first removes the parent images of older requirements.

By hand (as root, with Debian's docker.io and debootstrap installed)::

    python -m tests.docker_env up       # start dockerd, build the base image
    python -m tests.docker_env images   # + the wheelhouse and the CPU parent image
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE = "visionops-base:bookworm"
# The project's pinned dependencies on the base image: the parent image of the CPU
# stack in the tests (what pytorch/pytorch is to docker-cuda).
DEPS_REPOSITORY = "visionops-cpu-parent"
# Every image a test builds carries this label; `cleanup()` removes them all.
TEST_LABEL = "org.visionops.test"
SOCKET = Path("/var/run/docker.sock")
# Where the wheelhouse is served; builds reach it with `--network host`.
WHEELHOUSE_HOST = "127.0.0.1"
BASE_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-pip",
    "ca-certificates",
    "libgl1",
    "libglib2.0-0",
)
# Where the wheelhouse is kept between runs when VISIONOPS_WHEELHOUSE names no other
# folder: the checkout's own state folder (not the tests' throwaway state folder,
# which goes at the end of a session), never the user's ~/.cache.
WHEELHOUSE_ENV = "VISIONOPS_WHEELHOUSE"
WHEELHOUSE_DEFAULT = REPO / ".visionops" / "docker-wheelhouse"
# The Bento base image's uv reads the wheelhouse here (a fixed port: it is written
# into that image, which is kept between runs).
BENTO_WHEELHOUSE_PORT = 38765
BENTO_BASE_REPOSITORY = "visionops-bento-base"
# The parent image's wheelhouse (3.5 GB) and the image (7.5 GB), with some margin.
PARENT_BUILD_BYTES = 14 * 10**9
PREPARE = "sudo .venv/bin/python -m tests.docker_env images"
# tests/system_packages.sh installs both before `make test` when it can.
INSTALL = "sudo apt-get install -y --no-install-recommends docker.io debootstrap"


class EngineUnavailable(RuntimeError):
    """No Docker engine, and this process may not start one."""


def docker_cli() -> str:
    """A docker CLI whose `docker build` runs BuildKit without the buildx plugin.

    Debian's docker.io CLI (20.10) has BuildKit built in; a newer CLI without the
    buildx plugin refuses DOCKER_BUILDKIT=1, which `bentoml containerize` sets.
    """
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise EngineUnavailable(f"no docker CLI: {INSTALL}")


def docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Runs the docker CLI, capturing its output."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run([docker_cli(), *args], **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args[:3])} failed ({result.returncode}):\n"
            f"{(result.stdout or '')[-3000:]}{(result.stderr or '')[-3000:]}"
        )
    return result


def engine_answers() -> bool:
    """Whether a Docker daemon answers on the default socket."""
    if not SOCKET.exists():
        return False
    try:
        docker_cli()
    except EngineUnavailable:
        return False
    return docker("info", check=False, timeout=60).returncode == 0


def start_engine() -> subprocess.Popen | None:
    """Starts dockerd when it is not running.

    Returns:
        The daemon this call started, for `stop_engine`; None when one was running.

    Raises:
        EngineUnavailable: Not running, and not root or not installed.
    """
    if engine_answers():
        return None
    if os.geteuid() != 0:
        raise EngineUnavailable(f"no Docker engine and not root: run `{PREPARE}`")
    if not shutil.which("dockerd"):
        raise EngineUnavailable(f"docker.io is not installed: {INSTALL}")
    log = open(tempfile.gettempdir() + "/visionops-dockerd.log", "ab")  # noqa: SIM115
    daemon = subprocess.Popen(
        ["dockerd"], stdout=log, stderr=log, start_new_session=True
    )
    # The machine is shared: the daemon and its builds yield to interactive work.
    subprocess.run(["renice", "-n", "10", "-p", str(daemon.pid)], capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with {daemon.returncode}")
        if engine_answers():
            return daemon
        time.sleep(1)
    stop_engine(daemon)
    raise EngineUnavailable("dockerd did not answer within 120 s")


def stop_engine(daemon: subprocess.Popen | None) -> None:
    """Stops a daemon that `start_engine` started."""
    if daemon is None or daemon.poll() is not None:
        return
    daemon.terminate()
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def image_exists(tag: str) -> bool:
    """Whether the engine holds an image with this tag."""
    return docker("image", "inspect", tag, check=False).returncode == 0


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses."""
    for path in sorted(Path("/etc/apt").glob("sources.list*")) + sorted(
        Path("/etc/apt/sources.list.d").glob("*")
    ):
        if path.is_file() and path.suffix in ("", ".list", ".sources"):
            for word in path.read_text().split():
                if word.startswith("http") and word.rstrip("/").endswith("/debian"):
                    return word
    return "http://deb.debian.org/debian"


def build_base_image(tag: str = BASE_IMAGE) -> str:
    """Debian bookworm with Python 3.11, pip and OpenCV's libraries, imported.

    Built once (about a minute) and kept by tag: later runs reuse it. System Python
    takes pip installs as in the official python images (no PEP 668 marker), and
    `python` is Python 3, as ZenML's generated Dockerfile expects.
    """
    if image_exists(tag):
        return tag
    if not shutil.which("debootstrap"):
        raise EngineUnavailable(f"debootstrap is not installed: {INSTALL}")
    with tempfile.TemporaryDirectory(prefix="visionops-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                "bookworm",
                str(root),
                debian_mirror(),
            ],
            capture_output=True,
            check=True,
        )
        (root / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        (root / "usr/bin/python").symlink_to("python3")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
        )
        docker(
            "import",
            "--change",
            "ENV LANG=C.UTF-8 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
            "--change",
            'CMD ["python3"]',
            "-",
            tag,
            stdin=tar.stdout,
            capture_output=True,
            text=False,
        )
        tar.wait()
    return tag


def bento_requirements() -> list[str]:
    """What the Bento base image (uv) and `bentoml containerize` install."""
    from visionops.core.env import pinned
    from visionops.serving.service import PACKAGES

    return sorted(pinned(*{*PACKAGES, "uv"}))


def wheelhouse_requirements() -> list[str]:
    """What the CPU parent image installs: the project's pins and the stack's extras.

    torch and torchvision are the pinned builds, with their nvidia-* libraries: no
    CPU build of that pair can be installed here (docs/stacks.md).
    """
    from zenml.integrations.mlflow import MlflowIntegration

    from visionops.app.docker import project_requirements

    return sorted({*project_requirements(), *MlflowIntegration.get_requirements()})


def wheelhouse_dir() -> Path:
    """The folder holding the downloaded wheelhouses (`VISIONOPS_WHEELHOUSE`)."""
    return Path(os.environ.get(WHEELHOUSE_ENV) or WHEELHOUSE_DEFAULT).expanduser()


def build_wheelhouse(requirements: list[str]) -> Path:
    """Downloads the wheels for `requirements` with this machine's pip settings.

    Done once per set of requirements, into a folder of its own: an install from it
    resolves to exactly the versions this machine's pip chose (one of each).
    """
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    dest = wheelhouse_dir() / digest
    stamp = dest / ".complete"
    if stamp.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    reqs = dest / "requirements.txt"
    reqs.write_text("\n".join(requirements) + "\n")
    # No pip cache: it would be a second copy of the wheels, under ~/.cache.
    download = [sys.executable, "-m", "pip", "download", "-q", "--no-cache-dir"]
    download += ["-d", str(dest)]
    subprocess.run([*download, "-r", str(reqs)], check=True, capture_output=True)
    stamp.write_text("")
    return dest


@contextlib.contextmanager
def serve_wheelhouse(folder: Path, port: int = 0) -> Iterator[str]:
    """Serves `folder` on loopback for the length of a build; yields its URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            # uv drops connections once it has what it needs: not an error.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    handler = functools.partial(Quiet, directory=str(folder))
    server = Server((WHEELHOUSE_HOST, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{WHEELHOUSE_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def build_parent_image(base: str = BASE_IMAGE) -> str:
    """The base image with the project's pinned requirements, tagged by their hash.

    Kept between runs like the base image: it is what pulling pytorch/pytorch is to
    docker-cuda, and the longest build here.
    """
    requirements = wheelhouse_requirements()
    dockerfile = (REPO / "docker" / "cpu-parent.Dockerfile").read_text()
    # PyTorch's CPU wheel index, where reachable: a small image (the Dockerfile).
    torch_index = os.environ.get("VISIONOPS_TORCH_INDEX_URL", "")
    digest = hashlib.sha256(
        "\n".join([base, dockerfile, torch_index, *requirements]).encode()
    ).hexdigest()
    tag = f"{DEPS_REPOSITORY}:{digest[:12]}"
    if image_exists(tag):
        return tag
    for stale in _tagged_images():
        if stale.startswith(f"{DEPS_REPOSITORY}:"):
            docker("rmi", stale, check=False)
    require_free_space(PARENT_BUILD_BYTES, "the CPU parent image")
    wheels = build_wheelhouse(requirements)
    with contextlib.ExitStack() as stack:
        # The wheels are in the image once it is built: 3.5 GB the disk gets back.
        stack.callback(shutil.rmtree, wheels, ignore_errors=True)
        context = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="visionops-parent-")
        )
        Path(context, "requirements.txt").write_text("\n".join(requirements) + "\n")
        shutil.copy(
            REPO / "docker" / "cpu-parent.Dockerfile", Path(context, "Dockerfile")
        )
        with serve_wheelhouse(wheels) as url:
            _build(
                tag,
                context,
                BASE_IMAGE=base,
                WHEELHOUSE_URL=url,
                TORCH_INDEX_URL=torch_index,
            )
    return tag


def _build(tag: str, context: str, *extra: str, **build_args: str) -> None:
    """`docker build` on the host's network (the wheelhouse is on its loopback)."""
    args = [
        arg
        for name, value in build_args.items()
        for arg in ("--build-arg", f"{name}={value}")
    ]
    docker(
        "build",
        "--network",
        "host",
        *args,
        *extra,
        "-t",
        tag,
        context,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        timeout=3600,
    )


def build_bento_base_image(base: str = BASE_IMAGE) -> str:
    """The base of the Bento image on a machine without registry and PyPI, kept.

    Its uv installs from the wheelhouse served on loopback at BENTO_WHEELHOUSE_PORT,
    which `bentoml containerize` must run inside `bento_wheelhouse()`.
    """
    dockerfile = (REPO / "docker" / "bento-base.Dockerfile").read_text()
    digest = hashlib.sha256(
        f"{base}\n{BENTO_WHEELHOUSE_PORT}\n{dockerfile}".encode()
    ).hexdigest()
    tag = f"{BENTO_BASE_REPOSITORY}:{digest[:12]}"
    if image_exists(tag):
        return tag
    wheels = build_wheelhouse(bento_requirements())
    with serve_wheelhouse(wheels, BENTO_WHEELHOUSE_PORT) as url:
        dockerfile = str(REPO / "docker" / "bento-base.Dockerfile")
        _build(
            tag,
            str(REPO / "docker"),
            "-f",
            dockerfile,
            BASE_IMAGE=base,
            WHEELHOUSE_URL=url,
        )
    return tag


def bento_wheelhouse() -> contextlib.AbstractContextManager[str]:
    """The wheelhouse where the Bento base image's uv looks for packages."""
    return serve_wheelhouse(
        build_wheelhouse(bento_requirements()), BENTO_WHEELHOUSE_PORT
    )


def require_free_space(needed: int, what: str) -> None:
    """Fails before a build that would fill the disk (Docker's and the wheelhouse's).

    A full disk otherwise shows up far from its cause: in CI it stopped Airflow's
    metadata database in the middle of a DAG run.
    """
    for folder in (wheelhouse_dir(), Path("/var/lib/docker")):
        while not folder.exists():
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise RuntimeError(
                f"Building {what} needs about {needed / 1e9:.0f} GB free on the disk "
                f"of {folder}; {free / 1e9:.1f} GB is. Free some (`docker image "
                "prune`, `docker rmi` of images no longer used, `make clean`), rerun."
            )


def object_ids(*args: str) -> set[str]:
    return set(docker(*args).stdout.split())


def _tagged_images() -> dict[str, str]:
    """Tagged images: `repository:tag` -> id."""
    lines = docker(
        "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"
    ).stdout.splitlines()
    return {
        name: image
        for name, image in (line.split() for line in lines)
        if "<none>" not in name
    }


@contextlib.contextmanager
def engine_session() -> Iterator[None]:
    """The engine for a test module; afterwards nothing the module started is left.

    Containers, networks and volumes created meanwhile are removed, and so are the
    images tagged meanwhile (ZenML's step images, the Bento's, compose's), except the
    base images kept by tag between runs. Untagged images are left alone: one may be
    a build still running in another process. A daemon started here is stopped.
    """
    daemon = start_engine()
    containers = object_ids("ps", "-aq", "--no-trunc")
    images = set(_tagged_images())
    networks = object_ids("network", "ls", "-q")
    volumes = object_ids("volume", "ls", "-q")
    kept = (BASE_IMAGE.split(":")[0], DEPS_REPOSITORY, BENTO_BASE_REPOSITORY)
    try:
        yield
    finally:
        for container in object_ids("ps", "-aq", "--no-trunc") - containers:
            docker("rm", "-f", "-v", container, check=False)
        for network in object_ids("network", "ls", "-q") - networks:
            docker("network", "rm", network, check=False)
        for volume in object_ids("volume", "ls", "-q") - volumes:
            docker("volume", "rm", "-f", volume, check=False)
        for name in set(_tagged_images()) - images:
            if name.rsplit(":", 1)[0] not in kept:
                docker("rmi", "-f", name, check=False)
        stop_engine(daemon)


@contextlib.contextmanager
def engine_or_skip() -> Iterator[str]:
    """`engine_session` with the base image built; skips the test without an engine.

    Yields:
        The base image's tag.
    """
    import pytest

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(engine_session())
            base = build_base_image()
        except EngineUnavailable as err:
            stack.close()
            pytest.skip(str(err))
        yield base


def main(argv: list[str] | None = None) -> int:
    """`up`: engine and base image; `images`: + wheelhouse and parent image."""
    action = (argv or sys.argv[1:] or ["up"])[0]
    import visionops  # noqa: F401  (offline environment)

    start_engine()
    print(build_base_image())
    if action == "images":
        print(build_parent_image())
    return 0


if __name__ == "__main__":
    sys.exit(main())
