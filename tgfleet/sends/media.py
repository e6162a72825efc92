"""The media an outbox row carries: its JSON forms, their checks, and the Telegram
``InputMedia`` each becomes (pure functions; the sender does the uploading).

The ``media`` column holds one of:

- ``{"photo": [id, access_hash, file_reference_b64]}``: a photo the bot received;
- ``{"document": [id, access_hash, file_reference_b64]}``: a document, voice note or
  video the bot received (Telegram keeps what kind it is);
- ``{"upload": {"path": "/abs/path", "kind": "photo"|"document"|"voice"|"video",
  "file_name": ..., "mime_type": ...}}``: a file on the sender's machine, uploaded with
  the bot's client when the row is delivered.

The first two may carry ``"source": [chat_id, message_id]``, the message the file came
in: a file reference Telegram no longer takes (``FILE_REFERENCE_EXPIRED``) is then
fetched again from that message, once (``"refreshed": true`` marks the retry).
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
from dataclasses import dataclass
from typing import Any, TypeAlias

from telethon.tl import types

#: What ``upload`` may send a local file as.
UPLOAD_KINDS = ("photo", "document", "voice", "video")
STORED_KINDS = ("photo", "document")
_DEFAULT_MIME = {"voice": "audio/ogg", "video": "video/mp4", "photo": "image/jpeg"}
_UPLOAD_KEYS = {"path", "kind", "file_name", "mime_type"}
_STORED_EXTRA_KEYS = {"source", "refreshed"}
MAX_FILE_NAME = 255
FORMS = (
    "{'photo': [id, access_hash, ref_b64]}, {'document': [id, access_hash, ref_b64]} "
    "(optionally with 'source': [chat_id, message_id]) or {'upload': {'path': '/abs/path', "
    "'kind': 'photo'|'document'|'voice'|'video', 'file_name'?, 'mime_type'?}}"
)

InputFileLike: TypeAlias = types.InputFile | types.InputFileBig
UploadedMedia: TypeAlias = types.InputMediaUploadedPhoto | types.InputMediaUploadedDocument


class MediaError(ValueError):
    """Outbox media that is not one of the forms above; the message says what is wrong."""


class MediaFileError(MediaError):
    """A file to upload is missing or cannot be read: retrying cannot help."""


@dataclass(frozen=True)
class StoredFile:
    """A photo or document Telegram already has (sent again by id)."""

    kind: str  # "photo" | "document"
    id: int
    access_hash: int
    file_reference: bytes
    #: (chat_id, message_id) of the message it came in, if known.
    source: tuple[int, int] | None = None
    refreshed: bool = False


@dataclass(frozen=True)
class LocalFile:
    """A file on the sender's machine, uploaded when the row is delivered."""

    path: str
    kind: str
    file_name: str
    mime_type: str


MediaSpec: TypeAlias = StoredFile | LocalFile


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MediaError(f"outbox media: {what} must be an integer, got {value!r:.40}")
    return value


def _stored(kind: str, media: dict[str, Any]) -> StoredFile:
    value = media[kind]
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise MediaError(f"outbox media {kind!r} must be [id, access_hash, ref_b64]; use {FORMS}")
    file_id, access_hash, reference = value
    if not isinstance(reference, str):
        raise MediaError(f"outbox media: the file reference must be base64 text ({FORMS})")
    try:
        raw = base64.b64decode(reference, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("outbox media: the file reference is not valid base64") from None
    source = media.get("source")
    if source is not None:
        if not isinstance(source, list | tuple) or len(source) != 2:
            raise MediaError("outbox media: 'source' must be [chat_id, message_id]")
        source = (_int(source[0], "the source chat id"), _int(source[1], "the source message"))
    return StoredFile(
        kind,
        _int(file_id, "the file id"),
        _int(access_hash, "the access hash"),
        raw,
        source,
        bool(media.get("refreshed")),
    )


def _local(spec: Any) -> LocalFile:
    if not isinstance(spec, dict):
        raise MediaError(f"outbox media 'upload' must be an object; use {FORMS}")
    unknown = set(spec) - _UPLOAD_KEYS
    if unknown:
        raise MediaError(f"outbox media 'upload' has unknown keys {sorted(unknown)}")
    path = spec.get("path")
    if not isinstance(path, str) or not path or not os.path.isabs(path):
        raise MediaError(f"an upload needs an absolute 'path' (on the sender): {path!r:.80}")
    kind = spec.get("kind", "document")
    if kind not in UPLOAD_KINDS:
        raise MediaError(f"an upload's kind must be one of {', '.join(UPLOAD_KINDS)}: {kind!r:.40}")
    file_name = spec.get("file_name") or os.path.basename(path)
    if not isinstance(file_name, str) or len(file_name) > MAX_FILE_NAME or "/" in file_name:
        raise MediaError(f"an upload's file_name must be a plain name of at most {MAX_FILE_NAME}")
    mime_type = spec.get("mime_type") or _guess_mime(file_name, kind)
    if not isinstance(mime_type, str) or "/" not in mime_type:
        raise MediaError(f"an upload's mime_type must look like 'type/subtype': {mime_type!r:.40}")
    return LocalFile(path, kind, file_name, mime_type)


def _guess_mime(file_name: str, kind: str) -> str:
    guessed = mimetypes.guess_type(file_name)[0]
    return guessed or _DEFAULT_MIME.get(kind, "application/octet-stream")


def parse_media(media: Any) -> MediaSpec:
    """The typed form of an outbox ``media`` value; raises MediaError saying what is wrong."""
    if not isinstance(media, dict):
        raise MediaError(f"outbox media must be one of {FORMS}")
    forms = [key for key in ("photo", "document", "upload") if key in media]
    if len(forms) != 1:
        raise MediaError(f"outbox media must be exactly one of {FORMS}")
    form = forms[0]
    allowed = {form} | (_STORED_EXTRA_KEYS if form in STORED_KINDS else set())
    unknown = set(media) - allowed
    if unknown:
        raise MediaError(f"outbox media has unknown keys {sorted(unknown)}; use {FORMS}")
    return _local(media["upload"]) if form == "upload" else _stored(form, media)


def upload_media(
    path: str | os.PathLike[str],
    kind: str = "document",
    file_name: str | None = None,
    mime_type: str | None = None,
) -> dict[str, Any]:
    """The ``media`` value that uploads ``path`` (made absolute here) as ``kind``."""
    spec: dict[str, Any] = {"path": os.path.abspath(os.fspath(path)), "kind": kind}
    if file_name is not None:
        spec["file_name"] = file_name
    if mime_type is not None:
        spec["mime_type"] = mime_type
    media = {"upload": spec}
    parse_media(media)
    return media


def stored_media(
    kind: str,
    file_id: int,
    access_hash: int,
    file_reference_b64: str,
    source: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The ``media`` value that sends a received photo (``kind`` photo) or document again."""
    if kind not in STORED_KINDS:
        raise MediaError(f"a received file is a photo or a document, not {kind!r:.40}")
    media: dict[str, Any] = {kind: [file_id, access_hash, file_reference_b64]}
    if source is not None:
        media["source"] = [int(source[0]), int(source[1])]
    parse_media(media)
    return media


def with_reference(media: dict[str, Any], reference: bytes) -> dict[str, Any]:
    """``media`` (a stored file) with a fresh file reference, marked as refreshed."""
    spec = parse_media(media)
    if not isinstance(spec, StoredFile):
        raise MediaError("only a received photo or document has a file reference")
    fresh = dict(media)
    fresh[spec.kind] = [spec.id, spec.access_hash, base64.b64encode(reference).decode()]
    fresh["refreshed"] = True
    return fresh


def input_media(spec: StoredFile) -> types.InputMediaPhoto | types.InputMediaDocument:
    if spec.kind == "photo":
        return types.InputMediaPhoto(
            types.InputPhoto(spec.id, spec.access_hash, spec.file_reference)
        )
    return types.InputMediaDocument(
        types.InputDocument(spec.id, spec.access_hash, spec.file_reference)
    )


def uploaded_media(spec: LocalFile, file: InputFileLike) -> UploadedMedia:
    """The InputMedia of an uploaded file, with the attributes its kind needs."""
    if spec.kind == "photo":
        return types.InputMediaUploadedPhoto(file=file)
    attributes: list[Any] = [types.DocumentAttributeFilename(spec.file_name)]
    if spec.kind == "voice":
        attributes.append(types.DocumentAttributeAudio(duration=0, voice=True))
    elif spec.kind == "video":
        attributes.append(
            types.DocumentAttributeVideo(duration=0, w=0, h=0, supports_streaming=True)
        )
    return types.InputMediaUploadedDocument(
        file=file,
        mime_type=spec.mime_type,
        attributes=attributes,
        force_file=True if spec.kind == "document" else None,
    )


def check_readable(spec: LocalFile) -> int:
    """The size of the file to upload; MediaFileError when it is missing, empty or
    unreadable (a retry cannot fix that)."""
    try:
        with open(spec.path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.read(1)
    except FileNotFoundError:
        raise MediaFileError(f"the file to upload does not exist: {spec.path}") from None
    except IsADirectoryError:
        raise MediaFileError(f"the file to upload is a directory: {spec.path}") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise MediaFileError(f"cannot read the file to upload ({reason}): {spec.path}") from None
    if size == 0:
        raise MediaFileError(f"the file to upload is empty: {spec.path}")
    return size


def file_reference_in(message: Any, spec: StoredFile) -> bytes | None:
    """The current file reference of ``spec``'s file in ``message`` (None: not there)."""
    media = getattr(message, "media", None)
    found = getattr(media, "photo", None) if spec.kind == "photo" else None
    if spec.kind == "document":
        found = getattr(media, "document", None)
    if found is None or getattr(found, "id", None) != spec.id:
        return None
    reference = getattr(found, "file_reference", None)
    return bytes(reference) if reference else None
