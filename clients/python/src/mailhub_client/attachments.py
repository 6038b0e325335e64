"""Files to attach, given as bytes; the client writes them in base64 as the API wants them."""

from __future__ import annotations

import base64
import mimetypes
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from mailhub_client.types import AttachmentRequest

__all__ = ["Attachment"]

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message, or an inline image when it has a ``content_id``: the HTML
    shows it as ``<img src="cid:CONTENT_ID">`` (the id without angle brackets)."""

    filename: str
    content: bytes
    #: Guessed from the file name when not given.
    content_type: str | None = None
    content_id: str | None = None

    @classmethod
    def from_path(
        cls,
        path: str | PathLike[str],
        *,
        content_type: str | None = None,
        content_id: str | None = None,
    ) -> Attachment:
        file = Path(path)
        return cls(file.name, file.read_bytes(), content_type, content_id)

    def to_json(self) -> AttachmentRequest:
        content_type = (
            self.content_type or mimetypes.guess_type(self.filename)[0] or DEFAULT_CONTENT_TYPE
        )
        part: AttachmentRequest = {
            "filename": self.filename,
            "content_type": content_type,
            "content": base64.b64encode(self.content).decode("ascii"),
        }
        if self.content_id:
            part["disposition"] = "inline"
            part["content_id"] = self.content_id
        return part
