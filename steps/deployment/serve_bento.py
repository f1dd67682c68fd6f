"""Step: optionally start `bentoml serve` on the Bento and wait until it is ready."""

from typing import Annotated

import bentoml
from zenml import log_metadata, step

from visionops.core.names import SERVICE_URL
from visionops.serving.bento import start_server


@step(enable_cache=False)
def serve_bento(
    bento: bentoml.Bento, serve: bool, port: int
) -> Annotated[str, SERVICE_URL]:
    """Starts the server in the background; one that never gets ready fails the step.

    Args:
        bento: The Bento to serve.
        serve: Serve it (else nothing happens).
        port: The port (`DeploymentParameters.port`).
    """
    if not serve:
        return ""
    url = start_server(str(bento.tag), port=port)
    log_metadata({"url": url, "bento_tag": str(bento.tag)})
    return url
