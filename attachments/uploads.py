"""
The upload's size limit, enforced while the multipart body is parsed: a declared size past
it is refused before any byte is read (handle_raw_input), and the file's bytes are counted as
they are read, so a body without a (truthful) Content-Length is cut off at the limit.
"""
from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from messaging_app.errors import RequestTooLarge

# Room for the multipart framing and the small form fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def upload_body_limit() -> int:
    """The largest request body an upload may have (messaging_app/limits.py lets it through)."""
    return settings.ATTACHMENTS_MAX_BYTES + MULTIPART_OVERHEAD_BYTES


class FileTooLarge(RequestTooLarge):
    default_code = "file_too_large"

    def __init__(self):
        super().__init__(f"The file is larger than {settings.ATTACHMENTS_MAX_BYTES} bytes (ATTACHMENTS_MAX_BYTES).")


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    """Django's handler for large uploads (a temporary file, never the whole file in memory), with a limit."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > upload_body_limit():
            raise FileTooLarge()
        return super().handle_raw_input(input_data, META, content_length, boundary, encoding)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.ATTACHMENTS_MAX_BYTES:
            self.file.close()  # the temporary file goes at once
            raise FileTooLarge()
        return super().receive_data_chunk(raw_data, start)
