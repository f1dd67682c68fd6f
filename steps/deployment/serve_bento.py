"""Step: optionally start `bentoml serve` on the Bento and wait until it is ready."""

from typing import Annotated

import bentoml
from zenml import log_metadata, step
from zenml.client import Client

from visionops.core.names import SERVICE_URL
from visionops.serving.bento import start_server
from visionops.serving.keys import API_KEY_SECRET, API_KEY_SECRET_KEY


def _secret_api_key() -> str:
    """The keys of the ZenML secret `API_KEY_SECRET`, or "" when it does not exist
    (the server then takes `VISIONOPS_API_KEY` from the environment, if set)."""
    try:
        secret = Client().get_secret(API_KEY_SECRET, allow_partial_name_match=False)
    except KeyError:
        return ""
    return secret.secret_values.get(API_KEY_SECRET_KEY, "")


@step(enable_cache=False)
def serve_bento(
    bento: bentoml.Bento, serve: bool, port: int
) -> Annotated[str, SERVICE_URL]:
    """Starts the server in the background; one that never gets ready fails the step.

    Its keys come from the ZenML secret `visionops-service` (key `api_key`) when the
    stack has it, else from `VISIONOPS_API_KEY`; neither: it needs no key.

    Args:
        bento: The Bento to serve.
        serve: Serve it (else nothing happens).
        port: The port (`DeploymentParameters.port`).
    """
    if not serve:
        return ""
    api_key = _secret_api_key()
    url = start_server(str(bento.tag), port=port, api_key=api_key)
    log_metadata(
        {"url": url, "bento_tag": str(bento.tag), "api_key_secret": bool(api_key)}
    )
    return url
