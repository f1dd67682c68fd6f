"""Picsellia dataset versions (SDK 6.37), downloaded and staged via COCO or YOLO."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal, Protocol

from visionops.data.manifest import BOXES, Manifest, safe_id
from visionops.data.sources.archive import extract_zip
from visionops.data.sources.base import (
    Entry,
    SourceError,
    list_images,
    relative_to,
    write_staged,
)
from visionops.data.sources.coco import CocoSource, find_coco_files, looks_like_coco
from visionops.data.sources.yolo import (
    CLASSES_FILE,
    find_dataset_yaml,
    load_yaml,
    read_classes_txt,
    read_names,
)

SCHEME = "picsellia://"
TOKEN_ENV = "PICSELLIA_TOKEN"
HOST_ENV = "PICSELLIA_HOST"
ORGANIZATION_ENV = "PICSELLIA_ORGANIZATION"
SECRET_NAME = "picsellia"
SECRET_KEY = "token"

AnnotationFormat = Literal["coco", "yolo"]


class PicselliaAssets(Protocol):
    """The `MultiAsset` calls used: download files named by their filename."""

    def download(
        self,
        target_path: str | Path = "./",
        force_replace: bool = False,
        max_workers: int | None = None,
        use_id: bool = False,
    ) -> None: ...


class PicselliaDatasetVersion(Protocol):
    """The `DatasetVersion` calls used."""

    id: Any

    def list_assets(self) -> PicselliaAssets: ...

    def export_annotation_file(
        self,
        annotation_file_type: Any,
        target_path: str | Path = "./",
        force_replace: bool = True,
    ) -> str: ...


class PicselliaDataset(Protocol):
    """The `Dataset` calls used."""

    def get_version(self, version: str) -> PicselliaDatasetVersion: ...


class PicselliaClient(Protocol):
    """The `picsellia.Client` calls used; tests pass a fake."""

    def get_dataset_version_by_id(self, id: Any) -> PicselliaDatasetVersion: ...

    def get_dataset(self, name: str) -> PicselliaDataset: ...


def parse_uri(uri: str) -> tuple[str | None, str | None, str | None]:
    """Splits `picsellia://<version id>` or `picsellia://<dataset>/<version>`.

    Returns:
        (version id, dataset name, version name); unused parts are None.

    Raises:
        SourceError: When the uri names nothing.
    """
    rest = uri[len(SCHEME) :].strip().strip("/") if uri.startswith(SCHEME) else ""
    if not rest:
        raise SourceError(
            f"{uri!r} names no dataset. Use picsellia://<dataset version id> or "
            "picsellia://<dataset name>/<version name>."
        )
    name, _, version = rest.rpartition("/")
    if not name:
        return rest, None, None
    return None, name, version


def _zenml_token() -> str:
    from zenml.client import Client

    return str(Client().get_secret(SECRET_NAME).secret_values[SECRET_KEY])


def resolve_token() -> str:
    """Returns the API token from `PICSELLIA_TOKEN` or the ZenML secret.

    Raises:
        SourceError: When neither holds a token.
    """
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    try:
        token = _zenml_token()
    except Exception as exc:  # Any ZenML failure means "no secret to use".
        raise SourceError(
            f"No Picsellia API token: {TOKEN_ENV} is not set and the ZenML secret "
            f"{SECRET_NAME!r} could not be read ({type(exc).__name__}: {exc}). "
            f"Export {TOKEN_ENV}=<token>, or run `zenml secret create {SECRET_NAME} "
            f"--{SECRET_KEY}=<token>`."
        ) from exc
    if not token:
        raise SourceError(
            f"The ZenML secret {SECRET_NAME!r} has an empty {SECRET_KEY!r}. Update it "
            f"with `zenml secret update {SECRET_NAME} --{SECRET_KEY}=<token>`."
        )
    return token


def connect(token: str) -> PicselliaClient:
    """Builds the real SDK client from the token and the optional env settings."""
    from picsellia import Client

    kwargs: dict[str, str] = {"api_token": token}
    if os.environ.get(ORGANIZATION_ENV):
        kwargs["organization_name"] = os.environ[ORGANIZATION_ENV]
    if os.environ.get(HOST_ENV):
        kwargs["host"] = os.environ[HOST_ENV]
    try:
        return Client(**kwargs)
    except Exception as exc:
        raise SourceError(
            f"Cannot connect to Picsellia at {kwargs.get('host', 'the default host')}"
            f": {exc}. Check {TOKEN_ENV}, {ORGANIZATION_ENV} and {HOST_ENV}."
        ) from exc


def find_version(client: PicselliaClient, uri: str) -> PicselliaDatasetVersion:
    """The dataset version a `picsellia://` address names.

    Raises:
        SourceError: Picsellia has no such version (or the address names none).
    """
    version_id, dataset, version = parse_uri(uri)
    try:
        if version_id is not None:
            return client.get_dataset_version_by_id(version_id)
        return client.get_dataset(str(dataset)).get_version(str(version))
    except Exception as exc:
        what = (
            f"dataset version id {version_id!r}"
            if version_id is not None
            else f"dataset {dataset!r} version {version!r}"
        )
        raise SourceError(
            f"Picsellia has no {what} ({type(exc).__name__}: {exc}). Copy the "
            "version id from the Picsellia dataset page, or use "
            "picsellia://<dataset name>/<version name>."
        ) from exc


class PicselliaSource:
    """A Picsellia dataset version, staged from a cached download and export.

    Attributes:
        format: Always "picsellia".
        uri: The `picsellia://...` uri, recorded in the manifest.
    """

    format = "picsellia"

    def __init__(
        self,
        uri: str,
        *,
        client: PicselliaClient | None = None,
        cache_dir: Path,
        annotation_format: AnnotationFormat = "coco",
        kinds: tuple[str, ...] = (),
    ) -> None:
        """Checks the uri and the credentials; nothing is downloaded yet.

        Args:
            uri: `picsellia://<version id>` or `picsellia://<dataset>/<version>`.
            client: An SDK client; built from the environment when None.
            cache_dir: Downloads go to `cache_dir/picsellia/<version id>`.
            annotation_format: Export the annotations as "coco" (default; the
                class names travel in the file) or "yolo".
            kinds: The label kinds wanted, first preferred (see `CocoSource`).

        Raises:
            SourceError: When the uri, the format or the token is wrong.
        """
        self.uri = uri
        parse_uri(uri)  # an address naming nothing fails here, before any call
        if annotation_format not in ("coco", "yolo"):
            raise SourceError(
                f"Picsellia annotation format {annotation_format!r} is not supported; "
                "use 'coco' or 'yolo'."
            )
        self.annotation_format = annotation_format
        self.kinds = kinds
        self.cache_dir = cache_dir
        self._client = client
        self._token = None if client is not None else resolve_token()

    def stage(self, dest: Path) -> Manifest:
        """Downloads (or reuses) the assets and export, then stages them in `dest`."""
        version = self._dataset_version()
        work = self.cache_dir / "picsellia" / safe_id(str(version.id))
        images = work / "images"
        export_dir = work / "export"
        images.mkdir(parents=True, exist_ok=True)
        export_dir.mkdir(parents=True, exist_ok=True)
        try:
            # force_replace=False keeps already downloaded files: the cache.
            version.list_assets().download(images, force_replace=False)
            exported = Path(
                version.export_annotation_file(
                    self.annotation_format.upper(), export_dir, force_replace=True
                )
            )
        except Exception as exc:
            raise SourceError(
                f"Downloading {self.uri} from Picsellia failed: {exc}. Check the "
                "connection and that the token may read this dataset."
            ) from exc
        if exported.suffix.lower() == ".zip":
            annotations = extract_zip(exported, work / "unzipped")
        else:
            annotations = exported.parent
        kind = BOXES
        if self.annotation_format == "coco":
            class_names, entries, kind = self._coco(exported, annotations, images)
        else:
            class_names, entries = self._yolo(annotations, images)
        # A dataset version has no train/val/test of its own.
        entries = [dataclasses.replace(entry, split=None) for entry in entries]
        return write_staged(
            dest,
            entries,
            class_names=class_names,
            source=self.uri,
            source_format=self.format,
            root=work,
            kind=kind,
        )

    def _dataset_version(self) -> PicselliaDatasetVersion:
        client = self._client or connect(self._token or "")
        self._client = client
        return find_version(client, self.uri)

    def _coco(
        self, exported: Path, annotations: Path, images: Path
    ) -> tuple[list[str], list[Entry], str]:
        """Reads the COCO export and tells the kind of its labels."""
        if exported.suffix.lower() == ".json" and looks_like_coco(exported):
            files = [exported]
        else:
            files = find_coco_files(annotations)
        if not files:
            raise SourceError(
                f"The Picsellia COCO export {exported} holds no COCO json. Export "
                "with annotation_format='yolo' or check the dataset version."
            )
        source = CocoSource(images, files, uri=self.uri, kinds=self.kinds)
        class_names, entries = source.collect()
        return class_names, entries, source.kind

    def _yolo(self, annotations: Path, images: Path) -> tuple[list[str], list[Entry]]:
        # The YOLO zip is flat: <image stem>.txt per annotated asset + data.yaml.
        yaml_path = find_dataset_yaml(annotations) or next(
            iter(sorted(annotations.rglob("*.yaml"))), None
        )
        if yaml_path is not None:
            class_names = read_names(load_yaml(yaml_path), yaml_path)
        elif (annotations / CLASSES_FILE).is_file():
            class_names = read_classes_txt(annotations / CLASSES_FILE)
        else:
            raise SourceError(
                f"The Picsellia YOLO export in {annotations} has no class names "
                "(no data.yaml or classes.txt). Use the default COCO export."
            )
        labels = {
            path.stem: path
            for path in sorted(annotations.rglob("*.txt"))
            if path.name != CLASSES_FILE
        }
        return class_names, [
            Entry(
                image=image,
                source=relative_to(image, images),
                split=None,
                label=labels.get(image.stem),
            )
            for image in list_images(images)
        ]
