"""Requests to the service's endpoints: read in memory, checked, images decoded once.

Every endpoint declared with `upload_api` takes its request through `UploadRequest`
(a `bentoml.IODescriptor`, BentoML's public input-spec type) instead of BentoML's
own form parsing: the body is read from the stream and refused as soon as it passes
the limit, multipart parts stay in memory (never a temporary file, whatever the
transfer encoding), images are decoded from their bytes whatever type the client
declared, and every client mistake is a `RequestError` with its HTTP status. The
`ErrorShape` middleware gives every error answer of the service one JSON shape,
`{"error": "<message>"}`, whoever raised it (this module, BentoML, Starlette).

An image parameter is annotated `DecodedImage` (one file, its error is the
request's) or `list[DecodedImage]` (several files; a bad one becomes an
`ImageError` in its place and the others are still answered).
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import anyio.to_thread
import bentoml
import numpy as np
from pydantic import ConfigDict, ValidationError, create_model
from pydantic_core import core_schema
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from visionops.engine.onnx import OverBudgetError
from visionops.serving import limits
from visionops.serving.limits import (
    MAX_BODY_BYTES,
    MAX_FIELD_BYTES,
    MAX_FILES,
    MAX_PARTS,
    MAX_UPLOAD_BYTES,
    InputError,
    PixelBudget,
    decode_image,
    megabytes,
)

MULTIPART = "multipart/form-data"
JSON = "application/json"
MAX_HEADER_BYTES = 16 * 1024  # the headers of one multipart part


class RequestError(bentoml.exceptions.BentoMLException):
    """A request the client must fix, answered with `status` and the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, error_code=HTTPStatus(status))


logger = logging.getLogger(__name__)
# When the request being served is due (`time.monotonic()`), set by `Deadline`;
# the threads that decode and predict for it see it too (anyio copies the context).
_deadline: ContextVar[float | None] = ContextVar("visionops_deadline", default=None)


class Deadline:
    """ASGI middleware: each HTTP request is due `limits.REQUEST_TIMEOUT_S` after
    it arrives.

    BentoML answers 504 then, but cannot stop the thread that decodes or predicts
    for it; that work checks the deadline between its steps (`check_deadline`)
    and stops there, instead of taking a thread, a core and memory from the next
    requests for as long as it would have run.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _deadline.set(time.monotonic() + limits.REQUEST_TIMEOUT_S)
        try:
            await self.app(scope, receive, send)
        finally:
            _deadline.reset(token)


def check_deadline(progress: str) -> None:
    """Stops the request's work if it is past its deadline (`Deadline`).

    Args:
        progress: How far it got, for the log and the answer (`decoded 3 of 64
            images`).

    Raises:
        RequestError: 504 (BentoML answers the client in its own words, at the
            same timeout; this ends the work).
    """
    deadline = _deadline.get()
    if deadline is None or time.monotonic() <= deadline:
        return
    logger.warning(
        "Stopped a request past its %g s, answered 504: %s.",
        limits.REQUEST_TIMEOUT_S,
        progress,
    )
    raise RequestError(
        f"Not answered within {limits.REQUEST_TIMEOUT_S:g} s ({progress}); send "
        "fewer or smaller images per request.",
        504,
    )


@contextmanager
def within_budget() -> Iterator[None]:
    """A prediction its predictor refuses for the memory it would take
    (`OverBudgetError`) is the client's to shrink: 413 with the predictor's words."""
    try:
        yield
    except OverBudgetError as err:
        raise RequestError(str(err), 413) from None


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An uploaded image, decoded once: BGR pixels, EXIF orientation applied.

    Attributes:
        frame: The pixels.
        filename: The upload's file name.
        decode_ms: Decoding this image took this long.
        read_ms: Reading and parsing the request's body took this long.
        decoded_at: `time.perf_counter()` when decoding ended, so the endpoint
            can tell how long the request waited for a thread.
    """

    frame: np.ndarray
    filename: str
    decode_ms: float
    read_ms: float = 0.0
    decoded_at: float = 0.0

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return core_schema.no_info_plain_validator_function(_decoded_or_error)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict:
        # What BentoML's clients and OpenAPI page read as "a file upload".
        if handler.mode == "validation":
            return {"type": "file", "format": "image"}
        return {"type": "string", "format": "binary"}


@dataclass(frozen=True, slots=True)
class ImageError:
    """An image of a list upload that could not be decoded, in its place."""

    message: str
    status: int
    filename: str = ""


def _decoded_or_error(value: object) -> object:
    if isinstance(value, DecodedImage | ImageError):
        return value
    raise ValueError("send the image as a file upload")


def _image_fields(annotation: Any) -> tuple[bool, bool]:
    """Whether a parameter is an image upload, and whether it takes a list."""
    if annotation is DecodedImage:
        return True, False
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation) == (DecodedImage,), True
    return False, False


class UploadRequest(bentoml.IODescriptor):
    """The input spec of an upload endpoint; subclasses are made by `upload_api`."""

    model_config = ConfigDict(extra="forbid")
    files: ClassVar[dict[str, bool]] = {}  # image field -> takes a list
    endpoint: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.files = {}
        for name, field in cls.model_fields.items():
            is_image, many = _image_fields(field.annotation)
            if is_image:
                cls.files[name] = many
        cls.multipart_fields = list(cls.files)

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> UploadRequest:
        """Reads, checks and decodes one request (BentoML's `serde` is not used)."""
        start = time.perf_counter()
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise RequestError(_too_large(int(length)), 413)
        media_type, options = parse_options_header(request.headers.get("content-type"))
        media = media_type.decode("latin-1").lower()
        params: dict[str, Any] = {}
        uploads: dict[str, list[tuple[str, bytes]]] = {}
        if cls.files:
            if media != MULTIPART:
                raise RequestError(
                    f"{cls.endpoint} takes {MULTIPART}: {cls.usage()}", 415
                )
            boundary = options.get(b"boundary")
            if not boundary:
                raise RequestError(f"The {MULTIPART} content type has no boundary.")
            params, uploads = await _read_multipart(request, boundary, cls)
        else:
            body = await _read_body(request)
            if body.strip():
                if media != JSON:
                    raise RequestError(
                        f"{cls.endpoint} takes a JSON object or no body.", 415
                    )
                params = _json_object(body)
        for name, many in cls.files.items():
            count = len(uploads.get(name, []))
            if not count:
                raise RequestError(f"No image: {cls.usage()}")
            if not many and count > 1:
                raise RequestError(f"`{name}` takes one file; {count} were sent.")
        # The parameters are checked before any image is decoded.
        pending = ImageError("not decoded yet", 500)
        values = {n: [pending] if many else pending for n, many in cls.files.items()}
        try:
            request_model = cls.model_validate({**params, **values})
        except ValidationError as err:
            raise RequestError(_validation_message(err)) from None
        read_ms = (time.perf_counter() - start) * 1000
        for name, many in cls.files.items():
            decoded = await anyio.to_thread.run_sync(
                _decode_all, uploads[name], read_ms
            )
            if not many and isinstance(decoded[0], ImageError):
                raise RequestError(decoded[0].message, decoded[0].status)
            values[name] = decoded if many else decoded[0]
        return request_model.model_copy(update=values)

    @classmethod
    def usage(cls) -> str:
        """One line saying how to call the endpoint."""
        fields = [
            f"`{k}` ({'one or more files' if many else 'a file'})"
            for k, many in cls.files.items()
        ]
        fields += [f"`{k}`" for k in cls.model_fields if k not in cls.files]
        return "send the fields " + ", ".join(fields) + "."


def _decode_all(
    parts: list[tuple[str, bytes]], read_ms: float = 0.0
) -> list[DecodedImage | ImageError]:
    out: list[DecodedImage | ImageError] = []
    budget = PixelBudget()  # one per request
    for index, (filename, data) in enumerate(parts):
        check_deadline(f"decoded {index} of {len(parts)} images")
        start = time.perf_counter()
        try:
            frame = decode_image(data, budget)
        except InputError as err:
            out.append(ImageError(str(err), err.status, filename))
            continue
        end = time.perf_counter()
        out.append(DecodedImage(frame, filename, (end - start) * 1e3, read_ms, end))
    return out


def _too_large(size: int | None = None) -> str:
    limit = f"the limit is {megabytes(MAX_UPLOAD_BYTES)} per image"
    if size is None:
        return f"The request body is over {megabytes(MAX_BODY_BYTES)}; {limit}."
    return f"The request body is {megabytes(size)}; {limit}."


async def _chunks(request: Request) -> typing.AsyncIterator[bytes]:
    """The body as it arrives, refused as soon as it passes `MAX_BODY_BYTES`."""
    read = 0
    try:
        async for chunk in request.stream():
            read += len(chunk)
            if read > MAX_BODY_BYTES:
                raise RequestError(_too_large(), 413)
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise RequestError("The client left before sending the whole body.") from None


async def _read_body(request: Request) -> bytes:
    return b"".join([chunk async for chunk in _chunks(request)])


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError("The body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise RequestError("The body must be a JSON object.")
    return value


class _Part:
    __slots__ = ("chunks", "disposition", "filename", "header", "name", "size")

    def __init__(self) -> None:
        self.header = [b"", b""]  # the header being read: name, value
        self.disposition = b""
        self.chunks: list[bytes | memoryview] = []
        self.size = 0
        self.name = ""
        self.filename: str | None = None


class _FormReader:
    """python-multipart callbacks that keep parts in memory, under the limits."""

    def __init__(self, spec: type[UploadRequest]) -> None:
        self.spec = spec
        self.part = _Part()
        self.parts = 0
        self.files = 0
        self.params: dict[str, str] = {}
        self.uploads: dict[str, list[tuple[str, bytes]]] = {}
        self.ended = False

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise RequestError(f"Too many form fields: the limit is {MAX_PARTS}.")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header(data, start, end, value=False)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header(data, start, end, value=True)

    def _header(self, data: bytes, start: int, end: int, value: bool) -> None:
        part = self.part
        part.header[value] += data[start:end]
        if len(part.header[0]) + len(part.header[1]) > MAX_HEADER_BYTES:
            raise RequestError("A form part's header is too long.")

    def on_header_end(self) -> None:
        field, value = self.part.header
        if field.strip().lower() == b"content-disposition":
            self.part.disposition = value
        self.part.header = [b"", b""]

    def on_headers_finished(self) -> None:
        kind, options = parse_options_header(self.part.disposition)
        if kind.lower() != b"form-data" or b"name" not in options:
            raise RequestError(
                "A form part has no `Content-Disposition: form-data; name=...`."
            )
        self.part.name = _text(options[b"name"], "A form field name")
        if b"filename" in options:
            self.part.filename = _text(options[b"filename"], "A file name")
        name, spec = self.part.name, self.spec
        if name not in spec.model_fields:
            raise RequestError(f"Unknown field `{name}`: {spec.usage()}")
        if name in spec.files:
            if self.part.filename is None:
                raise RequestError(
                    f"`{name}` must be a file upload (multipart file part); "
                    "text and URLs are not accepted, nothing is fetched."
                )
            self.files += 1
            if self.files > MAX_FILES:
                raise RequestError(f"Too many files: the limit is {MAX_FILES}.")
        elif self.part.filename is not None:
            raise RequestError(f"`{name}` is a plain form field, not a file.")
        elif name in self.params:
            raise RequestError(f"`{name}` is sent twice.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        part.size += end - start
        if part.filename is None:
            if part.size > MAX_FIELD_BYTES:
                raise RequestError(f"The field `{part.name}` is too long.")
        elif part.size > MAX_UPLOAD_BYTES:
            raise RequestError(
                f"The file `{part.filename}` is over "
                f"{megabytes(MAX_UPLOAD_BYTES)}, the limit per image.",
                413,
            )
        # A view of the received chunk (immutable bytes) avoids a copy; the
        # parser's look-behind buffer is reused, so that one is copied.
        piece = memoryview(data)[start:end] if isinstance(data, bytes) else None
        part.chunks.append(piece if piece is not None else bytes(data[start:end]))

    def on_part_end(self) -> None:
        part = self.part
        data = b"".join(part.chunks)
        part.chunks.clear()
        if part.filename is None:
            self.params[part.name] = _text(data, f"The field `{part.name}`")
        else:
            self.uploads.setdefault(part.name, []).append((part.filename, data))

    def on_end(self) -> None:
        self.ended = True


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(f"{what} is not UTF-8 text.") from None


async def _read_multipart(
    request: Request, boundary: bytes, spec: type[UploadRequest]
) -> tuple[dict[str, str], dict[str, list[tuple[str, bytes]]]]:
    reader = _FormReader(spec)
    callbacks = {
        name: getattr(reader, name)
        for name in dir(reader)
        if name.startswith("on_") and callable(getattr(reader, name))
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        async for chunk in _chunks(request):
            parser.write(chunk)
        parser.finalize()
    except FormParserError as err:
        raise RequestError(f"The {MULTIPART} body is malformed: {err}") from None
    if not reader.ended:
        raise RequestError(
            f"The {MULTIPART} body ends before its closing boundary (cut short?)."
        )
    return reader.params, reader.uploads


def _validation_message(err: ValidationError) -> str:
    problems = []
    for error in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        problems.append(f"`{where}`: {error['msg']}")
    return "; ".join(problems[:5])


def upload_api(func: typing.Callable | None = None, /, **options: Any) -> typing.Any:
    """`bentoml.api` for an endpoint whose request `UploadRequest` reads.

    The input spec is made from the method's signature: `DecodedImage` or
    `list[DecodedImage]` parameters are multipart file fields, the others form
    fields validated by pydantic (with their `Field` constraints).

    Args:
        func: The API method (when used without arguments).
        **options: Passed to `bentoml.api` (`batchable`, `max_batch_size`, ...).
    """

    def wrap(method: typing.Callable) -> typing.Any:
        hints = typing.get_type_hints(method)
        fields: dict[str, Any] = {}
        for name, param in list(inspect.signature(method).parameters.items())[1:]:
            default = ... if param.default is param.empty else param.default
            fields[name] = (hints[name], default)
        spec = create_model(  # type: ignore[call-overload]
            f"{method.__name__.title()}Input",
            __base__=UploadRequest,
            __module__=method.__module__,
            **fields,
        )
        spec.endpoint = f"/{method.__name__}"
        return bentoml.api(input_spec=spec, **options)(method)

    return wrap(func) if func is not None else wrap


# --- one error shape ----------------------------------------------------------------


def error_body(status: int, body: bytes) -> bytes:
    """`{"error": message}` from any error answer: BentoML's one-element list,
    a dict with an `error`, or plain text."""
    message = ""
    try:
        value = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        value = None
        message = body[:500].decode("utf-8", "replace").strip()
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and isinstance(value.get("error"), str):
        message = value["error"]
    if not message:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = "Error"
    return json.dumps({"error": message}).encode()


class ErrorShape:
    """ASGI middleware: every 4xx/5xx answer is `{"error": "..."}` JSON."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        body = bytearray()

        async def shaped(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            payload = error_body(start["status"], bytes(body))
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, shaped)


class _QuietClientErrors(logging.Filter):
    """Drops BentoML's traceback log of a `RequestError`: the client's mistake is
    answered (and in the access log), not a server error."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = record.exc_info
        return not (info and isinstance(info[1], RequestError))


def quiet_client_errors() -> None:
    """Installs the filter on BentoML's serving logger, once."""
    logger = logging.getLogger("bentoml.serve")
    if not any(isinstance(f, _QuietClientErrors) for f in logger.filters):
        logger.addFilter(_QuietClientErrors())
