"""Reaching an MLflow tracker: the client, a health check, paged searches."""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from visionops.app.backup.archive import BackupError
from visionops.training.tracking import MLFLOW_TIMEOUT_S

PAGE = 1000
# MLflow's log_batch limits per request.
MAX_PARAMS, MAX_TAGS, MAX_METRICS = 100, 100, 1000


def mlflow_client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def public_uri(uri: str) -> str:
    """The URI without any user:password part, fit for a manifest or a message."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri


def check_tracker(tracking_uri: str) -> None:
    """Fails fast, with a clear message, when the tracker does not answer.

    A tracking server is probed with one `/health` request (MLflow's own client
    retries for minutes); then one search checks the store itself.
    """
    from mlflow.exceptions import MlflowException

    where = public_uri(tracking_uri)
    if tracking_uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(
                tracking_uri.rstrip("/") + "/health", timeout=MLFLOW_TIMEOUT_S
            ).close()
        except urllib.error.HTTPError:
            pass  # it answers; authentication and the rest are checked below
        except OSError as err:
            raise BackupError(
                f"The MLflow tracker at {where} is unreachable ({err}). Start it, "
                "or check MLFLOW_TRACKING_URI and the active stack "
                "(`python run.py --status`)."
            ) from None
    try:
        mlflow_client(tracking_uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as err:
        raise BackupError(f"The MLflow tracker at {where} failed: {err}") from None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No progress bars nor run links from MLflow while this runs."""
    quiet = {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    previous = {key: os.environ.get(key) for key in quiet}
    os.environ.update(quiet)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def describe(err: Exception) -> str:
    """An error as one line for people: MLflow's own message, else type and text."""
    from mlflow.exceptions import MlflowException

    return (
        str(err) if isinstance(err, MlflowException) else f"{type(err).__name__}: {err}"
    )


def pages(search: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Every item of a paged MLflow search, page after page."""
    token: str | None = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def name_filter(name: str) -> str:
    """A search_model_versions filter for one registered model."""
    escaped = name.replace("'", "\\'")
    return f"name='{escaped}'"


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
