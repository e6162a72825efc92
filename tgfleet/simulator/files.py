"""Files in the simulated world: photos and documents (metadata only, never bytes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Photo:
    id: int
    access_hash: int
    file_reference: bytes
    date: int
    width: int = 800
    height: int = 600
    size: int = 54_321


@dataclass(slots=True)
class Document:
    """A file (document, voice note, video): metadata only, never its bytes."""

    id: int
    access_hash: int
    file_reference: bytes
    date: int
    mime_type: str
    size: int
    kind: str = "document"  # "document", "voice" or "video"
    file_name: str | None = None
    duration: float = 0.0
    width: int = 0
    height: int = 0
    md5: str | None = None
