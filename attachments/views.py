"""
Thin views: uploads go to attachments.services, reads through attachments.selectors (which
answer None, hence 404, for an attachment the user may not see, exactly as for an unknown id).

Downloads are streamed by the API itself, from the local directory or the bucket, with
headers that keep anything uploaded from running in this origin: `nosniff`, a sandboxing
Content-Security-Policy, and `Content-Disposition: attachment` for everything but the raster
images PNG, JPEG, GIF and WebP (an SVG or HTML file is only ever a download).
"""
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from attachments import selectors, services
from attachments.images import SAFE_IMAGE_TYPES
from attachments.models import Attachment
from attachments.serializers import AttachmentSerializer, AttachmentUploadSerializer, attachment_payload
from attachments.storage import open_for_streaming
from attachments.uploads import SizeLimitedUploadHandler
from chats.schema import document_validation_errors

# No script, no plugin, no form, no navigation, no framing: a file opened in a tab is inert.
DOWNLOAD_CONTENT_SECURITY_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
INLINE_TYPES = frozenset(SAFE_IMAGE_TYPES.values())


def _attachment_or_404(request, attachment_id) -> Attachment:
    attachment = selectors.attachment_for_user(user=request.user, attachment_id=attachment_id)
    if attachment is None:
        raise Http404("No attachment with this id.")
    return attachment


def _file_response(key: str, *, content_type: str, size: int | None, file_name: str, inline: bool) -> FileResponse:
    response = FileResponse(
        open_for_streaming(key), as_attachment=not inline, filename=file_name, content_type=content_type
    )
    if size is not None:
        response["Content-Length"] = str(size)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = DOWNLOAD_CONTENT_SECURITY_POLICY
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    # Private: the browser may keep it for a while, shared caches never.
    response["Cache-Control"] = "private, max-age=300"
    return response


@document_validation_errors({"file": ["empty", "invalid_image", "image_too_large", "unsupported_type",
                                      "quota_exceeded"]})
class AttachmentUploadView(APIView):
    parser_classes = [MultiPartParser]

    def initialize_request(self, request, *args, **kwargs):
        # Before anything parses the body (authentication's CSRF check may): the size limit
        # applies while the multipart body is read.
        request.upload_handlers = [SizeLimitedUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        summary="Upload a file to send with a message",
        description=(
            "multipart/form-data with one field, `file`. Answers 201 with the attachment: send its "
            "`attachment_id` in a message's `attachments` (within ATTACHMENTS_UNATTACHED_TTL_HOURS, 24 by "
            "default, or it is deleted). Images (PNG, JPEG, GIF, WebP) are recognised by their content "
            "and get `width`, `height` and a `thumbnail_url`. A file past ATTACHMENTS_MAX_BYTES (25 MiB by "
            "default) is answered 413 `file_too_large`; a type not accepted, a corrupt image or one too "
            "large to decode, an empty file, or one past your storage quota, 400."
        ),
        request=AttachmentUploadSerializer,
        responses={201: AttachmentSerializer},
    )
    def post(self, request):
        serializer = AttachmentUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        attachment = services.attachment_create(uploader=request.user, upload=serializer.validated_data["file"])
        return Response(attachment_payload(attachment), status=status.HTTP_201_CREATED)


class AttachmentDetailView(APIView):
    @extend_schema(
        summary="An attachment's details",
        description="Yours, or one sent in a conversation you take part in; any other id is a 404.",
        responses={200: AttachmentSerializer},
    )
    def get(self, request, attachment_id):
        return Response(attachment_payload(_attachment_or_404(request, attachment_id)))


class AttachmentDownloadView(APIView):
    @extend_schema(
        summary="Download an attachment",
        description=(
            "The file, streamed, with its `Content-Type`. PNG, JPEG, GIF and WebP images are served "
            "`inline`; anything else (SVG included) as `Content-Disposition: attachment`. Every download "
            "carries `X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy. "
            "Yours, or one sent in a conversation you take part in; any other id is a 404."
        ),
        responses={(200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The file.")},
    )
    def get(self, request, attachment_id):
        attachment = _attachment_or_404(request, attachment_id)
        return _file_response(
            attachment.storage_key,
            content_type=attachment.content_type,
            size=attachment.size,
            file_name=attachment.file_name,
            inline=attachment.content_type in INLINE_TYPES,
        )


class AttachmentThumbnailView(APIView):
    @extend_schema(
        summary="An image attachment's thumbnail",
        description="A PNG at most 320x320 pixels. 404 for other files, and for ids you may not see.",
        responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The thumbnail.")},
    )
    def get(self, request, attachment_id):
        attachment = _attachment_or_404(request, attachment_id)
        if not attachment.thumbnail_key:
            raise Http404("This attachment has no thumbnail.")
        stem = attachment.file_name.rsplit(".", 1)[0] or "thumbnail"
        return _file_response(
            attachment.thumbnail_key, content_type="image/png", size=None, file_name=f"{stem}-thumbnail.png",
            inline=True,
        )
