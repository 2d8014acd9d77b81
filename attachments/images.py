"""
What an uploaded file is, by its content: a raster image Pillow can decode (its real type,
its size, a thumbnail) or anything else. Images are decoded under a pixel ceiling, so a small
file that would expand to gigabytes (a decompression bomb) is refused before it is decoded,
and a corrupt or truncated one is refused too: both are the client's fault (400), never a 500
or a worker busy for minutes.
"""
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, UnidentifiedImageError

# Raster formats browsers display and that cannot carry script: the only ones served inline.
SAFE_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
THUMBNAIL_SIZE = (320, 320)


@dataclass
class ImageInfo:
    content_type: str
    width: int
    height: int
    thumbnail: bytes  # PNG


def _refuse(message: str, code: str) -> ValidationError:
    return ValidationError({"file": ValidationError(message, code=code)})


def inspect_image(fileobj, declared_type: str) -> ImageInfo | None:
    """
    ImageInfo for a PNG, JPEG, GIF or WebP file; None for anything else (a PDF, an SVG...).
    A file that claims to be one of those images (by its declared type) but does not decode,
    or one too large to decode, raises ValidationError.
    """
    # Pillow refuses images past twice this with DecompressionBombError, and warns past it;
    # our own check below refuses past it first. Set here too, so any decode in this process obeys it.
    Image.MAX_IMAGE_PIXELS = settings.ATTACHMENTS_MAX_IMAGE_PIXELS
    claims_image = declared_type in SAFE_IMAGE_TYPES.values()
    fileobj.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fileobj, formats=list(SAFE_IMAGE_TYPES))
            content_type = SAFE_IMAGE_TYPES[image.format]
            width, height = image.size
            if width * height > settings.ATTACHMENTS_MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError("too many pixels")
            image.draft("RGB", THUMBNAIL_SIZE)  # JPEG: decode at a reduced scale
            image.thumbnail(THUMBNAIL_SIZE)
            if image.mode not in ("RGB", "RGBA", "L", "LA"):
                image = image.convert("RGBA")
            out = io.BytesIO()
            image.save(out, format="PNG", optimize=True)
    except UnidentifiedImageError:
        if claims_image:
            raise _refuse("The file is not a valid image.", "invalid_image")
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse(
            f"The image is too large to process (at most {settings.ATTACHMENTS_MAX_IMAGE_PIXELS} pixels).",
            "image_too_large",
        )
    except (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, TypeError):
        # Truncated or corrupt data (Pillow raises any of these from its decoders).
        raise _refuse("The file is not a valid image (corrupt or truncated).", "invalid_image")
    finally:
        fileobj.seek(0)
    return ImageInfo(content_type=content_type, width=width, height=height, thumbnail=out.getvalue())
