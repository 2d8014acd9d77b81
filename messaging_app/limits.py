"""Refuses oversize request bodies (413) before anything reads or parses them."""
from django.conf import settings

from messaging_app.errors import error_response


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "client_error", "bad_request", "Invalid Content-Length header.")
        if length > settings.MAX_REQUEST_BODY_BYTES:
            return error_response(
                413,
                "client_error",
                "request_too_large",
                f"The request body is larger than {settings.MAX_REQUEST_BODY_BYTES} bytes.",
            )
        return self.get_response(request)
