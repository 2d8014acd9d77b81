"""Files for the tests: real images made by Pillow, and uploads of them."""
import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def image_bytes(width: int = 64, height: int = 48, format: str = "PNG", color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=format)
    return out.getvalue()


def upload(content: bytes = b"hello, file", name: str = "notes.txt", content_type: str = "text/plain"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def png_upload(name: str = "photo.png", **kwargs):
    return upload(image_bytes(**kwargs), name=name, content_type="image/png")
