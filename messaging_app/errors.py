"""
The one error shape of the API, for DRF views and for plain Django responses:

    {"type": "validation_error" | "client_error" | "server_error",
     "errors": [{"code": "...", "detail": "...", "attr": "field.path" | null}]}

DRF errors are formatted by drf-standardized-errors; this module adds the
conversions it does not know about and JSON versions of Django's 404/500 pages.
"""
import logging

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from drf_standardized_errors.handler import ExceptionHandler
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.serializers import as_serializer_error
from rest_framework_simplejwt.exceptions import InvalidToken

request_logger = logging.getLogger("django.request")


class ServiceUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The service is temporarily unavailable. Try again shortly."
    default_code = "service_unavailable"


class CursorExpired(exceptions.APIException):
    status_code = 410
    default_detail = "The events after this cursor are no longer kept: reload your state over REST."
    default_code = "cursor_expired"


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class ApiExceptionHandler(ExceptionHandler):
    def run(self):
        # A browser opening an API page without credentials is sent to the login form (and
        # back afterwards) instead of a 401 page; API clients keep getting the 401.
        request = self.context.get("request")
        if (
            isinstance(self.exc, exceptions.NotAuthenticated)
            and request is not None
            and request.method in ("GET", "HEAD")
            and isinstance(getattr(request, "accepted_renderer", None), BrowsableAPIRenderer)
        ):
            return redirect_to_login(request.get_full_path(), login_url=settings.LOGIN_URL)
        return super().run()

    def convert_known_exceptions(self, exc: Exception) -> Exception:
        # The database is down or unreachable: a retryable 503, not a 500. Any open
        # transaction was rolled back, so nothing is half-written.
        # So is Redis (the throttle counters on every request), e.g. while Sentinel fails over
        # after the client's retries (docs/redis.md).
        if isinstance(exc, (OperationalError, InterfaceError, RedisError)):
            unavailable = ServiceUnavailable()
            unavailable.wait = 5
            return unavailable
        if isinstance(exc, RequestDataTooBig):
            return RequestTooLarge()
        # More query parameters or form fields (or files) than Django parses: the request's
        # fault, like a malformed body, not a 500.
        if isinstance(exc, TooManyFieldsSent):
            return exceptions.ParseError(
                f"Too many query parameters or form fields (at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS})."
            )
        if isinstance(exc, TooManyFilesSent):
            return exceptions.ParseError(f"Too many files (at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES}).")
        # Services validate models with full_clean(); their errors are client errors.
        if isinstance(exc, DjangoValidationError):
            return exceptions.ValidationError(as_serializer_error(exc))
        # Services raise Django's exceptions; keep their explanations.
        if isinstance(exc, DjangoPermissionDenied) and exc.args:
            return exceptions.PermissionDenied(str(exc))
        if isinstance(exc, Http404) and exc.args:
            return exceptions.NotFound(str(exc))
        # SimpleJWT details are nested dicts that would flatten into several errors.
        if isinstance(exc, InvalidToken):
            return _with_auth_header(
                exceptions.AuthenticationFailed("The token is invalid or expired.", code=InvalidToken.default_code),
                exc,
            )
        if isinstance(exc, exceptions.AuthenticationFailed) and isinstance(exc.detail, dict):
            # e.g. "User is inactive", "Authorization header must contain two space-delimited
            # values": one error with the documented code, SimpleJWT's explanation kept.
            detail = str(exc.detail.get("detail") or "Authentication failed.")
            return _with_auth_header(exceptions.AuthenticationFailed(detail), exc)
        return super().convert_known_exceptions(exc)

    def report_exception(self, exc: exceptions.APIException, response) -> None:
        if not isinstance(exc, ServiceUnavailable):
            return super().report_exception(exc, response)
        # While the database is away every request fails the same way: one line each, naming
        # the database's error, instead of a full traceback each.
        request = getattr(self.context.get("request"), "_request", None)
        request_logger.error(
            "Service unavailable (%s): %s: %s", "redis" if isinstance(self.exc, RedisError) else "database",
            getattr(request, "path", ""), self.exc,
            extra={"status_code": response.status_code, "request": request},
        )
        response._has_been_logged = True  # Django's own 5xx log line would repeat it


def _with_auth_header(new: exceptions.APIException, old: Exception) -> exceptions.APIException:
    new.auth_header = getattr(old, "auth_header", None)
    return new


def error_body(error_type: str, code: str, detail: str) -> dict:
    return {"type": error_type, "errors": [{"code": code, "detail": detail, "attr": None}]}


def error_response(status: int, error_type: str, code: str, detail: str) -> JsonResponse:
    return JsonResponse(error_body(error_type, code, detail), status=status)


def not_found(request, exception=None):
    """handler404: unknown URLs answer in the API's error shape, not an HTML page."""
    return JsonResponse(error_body("client_error", "not_found", "Not found."), status=404)


def server_error(request):
    """handler500: never leak a traceback or an HTML page to an API client."""
    return JsonResponse(
        error_body("server_error", "error", "A server error occurred."), status=500
    )


def bad_request(request, exception=None):
    return JsonResponse(error_body("client_error", "bad_request", "Bad request."), status=400)


def permission_denied(request, exception=None):
    return JsonResponse(
        error_body("client_error", "permission_denied", "Permission denied."), status=403
    )
