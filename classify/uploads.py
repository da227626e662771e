"""An upload handler that stops reading a file once it passes LOUPE_MAX_UPLOAD_BYTES.

Without it Django would spool an arbitrarily large upload to a temporary file before any view
could refuse it. The names of skipped files are kept on the request so the view can say why.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile


class SizeLimitUploadHandler(FileUploadHandler):
    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        if not hasattr(self.request, "oversized_uploads"):
            self.request.oversized_uploads = []

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > settings.LOUPE_MAX_UPLOAD_BYTES:
            self.request.oversized_uploads.append(self.file_name)
            raise SkipFile()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers build the file
