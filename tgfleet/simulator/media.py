"""Files: uploads (upload.saveFilePart / saveBigFilePart), the media a bot may send
(InputMediaPhoto / InputMediaDocument by id, InputMediaUploadedPhoto / ...Document), and
the documents, voice notes and videos simulated users send.

Memory stays bounded: an upload keeps each part's size and a running MD5, never the
bytes; at most ``MAX_UPLOADS`` uploads are open per simulator (the oldest is forgotten).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from telethon.tl import functions, types

from tgfleet.simulator import mtproto
from tgfleet.simulator.files import Document, Photo
from tgfleet.simulator.methods import RpcContext, handles
from tgfleet.simulator.world import World, WorldError

MAX_PART = 512 * 1024
MAX_SMALL_FILE = 10 * 1024 * 1024
MAX_PARTS = 4000
MAX_UPLOADS = 1000
KINDS = ("document", "voice", "video")
_DEFAULT_MIME = {"document": "application/octet-stream", "voice": "audio/ogg", "video": "video/mp4"}


@dataclass
class Upload:
    """One file being uploaded: part sizes, and an MD5 over the parts received in order."""

    big: bool
    total_parts: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    md5: Any = field(default_factory=hashlib.md5)
    md5_next: int = 0  # the part the running MD5 expects next (-1: out of order, unknown)

    def add(self, index: int, data: bytes) -> None:
        if index == self.md5_next:
            self.md5.update(data)
            self.md5_next += 1
        elif not (index in self.sizes and index < self.md5_next):  # (a retried part is fine)
            self.md5_next = -1
        self.sizes[index] = len(data)

    def check_sizes(self) -> None:
        """Every part but the last has one size: a multiple of 1 KiB dividing 512 KiB."""
        sizes = [self.sizes[i] for i in sorted(self.sizes)]
        first = sizes[0]
        if len(sizes) > 1 and (
            first % 1024 or MAX_PART % first or any(s != first for s in sizes[:-1])
        ):
            raise WorldError(400, "FILE_PART_SIZE_INVALID")
        if sizes[-1] > first:
            raise WorldError(400, "FILE_PART_SIZE_CHANGED")

    @property
    def size(self) -> int:
        return sum(self.sizes.values())


class Uploads:
    """Open uploads per (bot, file_id), oldest forgotten first."""

    def __init__(self) -> None:
        self._open: OrderedDict[tuple[int, int], Upload] = OrderedDict()

    def part(self, bot_id: int, file_id: int, index: int, data: bytes, total: int | None) -> None:
        if not data:
            raise WorldError(400, "FILE_PART_EMPTY")
        if len(data) > MAX_PART:
            raise WorldError(400, "FILE_PART_TOO_BIG")
        if index < 0 or index >= (total or MAX_PARTS) or (total or 0) > MAX_PARTS:
            raise WorldError(400, "FILE_PART_INVALID")
        key = (bot_id, file_id)
        upload = self._open.get(key)
        if upload is None:
            upload = self._open[key] = Upload(big=total is not None)
            while len(self._open) > MAX_UPLOADS:
                self._open.popitem(last=False)
        if total is not None:
            upload.total_parts = total
        upload.add(index, data)

    def take(self, bot_id: int, input_file: Any) -> Upload:
        """The finished upload an InputFile/InputFileBig names; checks parts and MD5."""
        upload = self._open.get((bot_id, input_file.id))
        if upload is None:
            raise WorldError(400, "FILE_PART_0_MISSING")
        for index in range(input_file.parts):
            if index not in upload.sizes:
                raise WorldError(400, f"FILE_PART_{index}_MISSING")
        if len(upload.sizes) != input_file.parts:
            raise WorldError(400, "FILE_PARTS_INVALID")
        upload.check_sizes()
        self._open.move_to_end((bot_id, input_file.id))  # (kept: a file may be sent again)
        if isinstance(input_file, types.InputFile):
            if upload.size > MAX_SMALL_FILE:
                raise WorldError(400, "FILE_PARTS_INVALID")
            digest = input_file.md5_checksum
            if digest and upload.md5_next >= 0 and digest != upload.md5.hexdigest():
                raise WorldError(400, "MD5_CHECKSUM_INVALID")
        return upload


@handles(functions.upload.SaveFilePartRequest)
def save_file_part(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    ctx.sim.uploads.part(bot.id, request.file_id, request.file_part, request.bytes, None)
    ctx.sim.stats["file_parts"] += 1
    return mtproto.BOOL_TRUE


@handles(functions.upload.SaveBigFilePartRequest)
def save_big_file_part(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    total = request.file_total_parts
    ctx.sim.uploads.part(bot.id, request.file_id, request.file_part, request.bytes, total)
    ctx.sim.stats["file_parts"] += 1
    return mtproto.BOOL_TRUE


def _random_id() -> int:
    value: int = struct.unpack("<q", os.urandom(8))[0] & 0x7FFF_FFFF_FFFF_FFFF
    return value


def add_document(
    world: World,
    kind: str = "document",
    mime_type: str | None = None,
    size: int = 12_345,
    file_name: str | None = None,
    duration: float = 0.0,
    width: int = 0,
    height: int = 0,
    md5: str | None = None,
) -> Document:
    """A new document in the world (no bytes: its metadata is what bots see)."""
    if kind not in KINDS:
        raise WorldError(400, f"media kind must be one of {', '.join(KINDS)}")
    if size <= 0:
        raise WorldError(400, "size must be positive")
    doc_id = _random_id()
    doc = Document(
        id=doc_id,
        access_hash=world.access_hash(0, doc_id),
        file_reference=os.urandom(16),
        date=int(time.time()),
        mime_type=mime_type or _DEFAULT_MIME[kind],
        size=size,
        kind=kind,
        file_name=file_name,
        duration=duration,
        width=width,
        height=height,
        md5=md5,
    )
    if kind == "video" and not (width and height):
        doc.width, doc.height = 640, 360
    world.documents[doc_id] = doc
    return doc


def _document_from_attributes(world: World, upload: Upload, media: Any) -> Document:
    kind, name, duration, width, height = "document", None, 0.0, 0, 0
    for attr in media.attributes:
        if isinstance(attr, types.DocumentAttributeFilename):
            name = attr.file_name
        elif isinstance(attr, types.DocumentAttributeAudio) and attr.voice:
            kind, duration = "voice", float(attr.duration)
        elif isinstance(attr, types.DocumentAttributeVideo) and not media.force_file:
            kind, duration, width, height = "video", float(attr.duration), attr.w, attr.h
    md5 = upload.md5.hexdigest() if upload.md5_next >= 0 else None
    return add_document(
        world, kind, media.mime_type, upload.size, name, duration, width, height, md5
    )


def resolve_media(ctx: RpcContext, bot_id: int, media: Any) -> Photo | Document:
    """The photo or document an InputMedia names (uploading it if it is a new upload)."""
    world = ctx.sim.world
    if isinstance(media, types.InputMediaUploadedPhoto):
        upload = ctx.sim.uploads.take(bot_id, media.file)
        photo = world.add_photo()
        photo.size = upload.size
        return photo
    if isinstance(media, types.InputMediaUploadedDocument):
        upload = ctx.sim.uploads.take(bot_id, media.file)
        return _document_from_attributes(world, upload, media)
    if isinstance(media, types.InputMediaPhoto) and isinstance(media.id, types.InputPhoto):
        found: Photo | Document | None = world.photos.get(media.id.id)
        ref = media.id
    elif isinstance(media, types.InputMediaDocument) and isinstance(media.id, types.InputDocument):
        found, ref = world.documents.get(media.id.id), media.id
    else:
        raise WorldError(400, "MEDIA_INVALID")
    if found is None or found.access_hash != ref.access_hash:
        raise WorldError(400, "MEDIA_EMPTY")
    if found.file_reference != ref.file_reference:
        raise WorldError(400, "FILE_REFERENCE_EXPIRED")
    return found
