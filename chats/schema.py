"""
What the OpenAPI schema says about errors, beyond what drf-standardized-errors
works out from serializers and filter sets by itself:

- error codes of our own: 401 `token_not_valid` (any bad JWT) and the token
  endpoints' codes, 413 `request_too_large`, 503 `service_unavailable`
  (serializers here, wired in by the ERROR_SCHEMAS setting and the token views);
- the headers that come with some errors (`WWW-Authenticate`, `Retry-After`);
- validation errors raised outside request serializers and filter sets: by
  services, cursor pagination and the search term checks (`document_validation_errors`);
- list items in `attr`: errors name the item (`participants.0`), the schema a
  pattern (`postprocess_indexed_attrs`).
"""
import re
from collections.abc import Iterable

from django.db import models
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.plumbing import force_instance
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from drf_standardized_errors.openapi import AutoSchema as StandardizedErrorsAutoSchema
from drf_standardized_errors.openapi_serializers import ClientErrorEnum, ServerErrorEnum
from drf_standardized_errors.openapi_utils import get_example_from_exception, get_serializer_field_error_codes
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from drf_standardized_errors.settings import package_settings
from rest_framework import serializers
from rest_framework_simplejwt.serializers import TokenObtainSerializer

from chats.filters import BoundedSearchFilter
from chats.pagination import TimelinePagination
from messaging_app.errors import RequestTooLarge, ServiceUnavailable, error_body


# --- Error codes drf-standardized-errors does not know -------------------------------
# Enum names are registered in SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].
class ErrorCode401Enum(models.TextChoices):
    """Any authenticated endpoint: no credentials, wrong ones, or a bad or expired JWT."""

    AUTHENTICATION_FAILED = "authentication_failed"
    NOT_AUTHENTICATED = "not_authenticated"
    TOKEN_NOT_VALID = "token_not_valid"


class TokenObtainErrorCode401Enum(models.TextChoices):
    """POST /api/token/: wrong email or password, or an inactive account."""

    NO_ACTIVE_ACCOUNT = "no_active_account"


class TokenRefreshErrorCode401Enum(models.TextChoices):
    """POST /api/token/refresh/: a bad, expired or used refresh token; a deleted or inactive account."""

    NO_ACTIVE_ACCOUNT = "no_active_account"
    TOKEN_NOT_VALID = "token_not_valid"


class TokenBlacklistErrorCode401Enum(models.TextChoices):
    """POST /api/token/blacklist/: a bad, expired or already blacklisted refresh token."""

    TOKEN_NOT_VALID = "token_not_valid"


class ErrorCode413Enum(models.TextChoices):
    REQUEST_TOO_LARGE = "request_too_large"
    # POST /api/attachments/: the file passes ATTACHMENTS_MAX_BYTES.
    FILE_TOO_LARGE = "file_too_large"


class ErrorCode503Enum(models.TextChoices):
    SERVICE_UNAVAILABLE = "service_unavailable"


class ErrorCode410Enum(models.TextChoices):
    """GET /api/events/: the events after `since` are no longer kept."""

    CURSOR_EXPIRED = "cursor_expired"


def _error_response_serializer(name: str, error_type: type[models.TextChoices], codes: type[models.TextChoices]):
    """`{"type", "errors": [{"code", "detail", "attr": null}]}` with these codes, as component `name`."""

    class Error(serializers.Serializer):
        code = serializers.ChoiceField(choices=codes.choices)
        detail = serializers.CharField()
        attr = serializers.CharField(allow_null=True)

        class Meta:
            ref_name = name.replace("ErrorResponse", "Error")

    class ErrorResponse(serializers.Serializer):
        type = serializers.ChoiceField(choices=error_type.choices)
        errors = Error(many=True)

        class Meta:
            ref_name = name

    return ErrorResponse


# DRF_STANDARDIZED_ERRORS["ERROR_SCHEMAS"]: these replace the package's defaults everywhere.
ErrorResponse401Serializer = _error_response_serializer("ErrorResponse401", ClientErrorEnum, ErrorCode401Enum)
ErrorResponse413Serializer = _error_response_serializer("ErrorResponse413", ClientErrorEnum, ErrorCode413Enum)
ErrorResponse503Serializer = _error_response_serializer("ErrorResponse503", ServerErrorEnum, ErrorCode503Enum)
ErrorResponse410Serializer = _error_response_serializer("ErrorResponse410", ClientErrorEnum, ErrorCode410Enum)
# The token endpoints authenticate nobody: their 401s are about the credentials or token sent.
TokenObtainErrorResponse401Serializer = _error_response_serializer(
    "TokenObtainErrorResponse401", ClientErrorEnum, TokenObtainErrorCode401Enum
)
TokenRefreshErrorResponse401Serializer = _error_response_serializer(
    "TokenRefreshErrorResponse401", ClientErrorEnum, TokenRefreshErrorCode401Enum
)
TokenBlacklistErrorResponse401Serializer = _error_response_serializer(
    "TokenBlacklistErrorResponse401", ClientErrorEnum, TokenBlacklistErrorCode401Enum
)


# --- Response headers: on every response, and with some errors ----------------------------
RESPONSE_HEADERS = [
    OpenApiParameter(
        "X-Request-ID",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=True,
        required=True,
        description="The request's id, as in the server's log lines: the client's own `X-Request-ID` "
        "if it sent a valid UUID, else a new one.",
    ),
    OpenApiParameter(
        "WWW-Authenticate",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[401],
        required=True,
        description='How to authenticate: `Bearer realm="api"`.',
    ),
    OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=[429, 503],
        description="Seconds to wait before trying again.",
    ),
]


def _example(name: str, status: int, code: str, detail: str) -> OpenApiExample:
    return OpenApiExample(
        name, value=error_body("client_error", code, str(detail)), response_only=True, status_codes=[str(status)]
    )


# Next to the package's examples (one per DRF exception).
ERROR_EXAMPLES = [
    _example("TokenNotValid", 401, "token_not_valid", "The token is invalid or expired."),
    _example(
        "NoActiveAccount", 401, "no_active_account", TokenObtainSerializer.default_error_messages["no_active_account"]
    ),
    get_example_from_exception(RequestTooLarge()),
    get_example_from_exception(ServiceUnavailable()),
]


def _documented_codes(serializer) -> set[str] | None:
    """The codes an error response serializer allows, if it lists them (not for 400s)."""
    errors = getattr(force_instance(serializer), "fields", {}).get("errors")
    code = getattr(getattr(errors, "child", None), "fields", {}).get("code")
    return set(code.choices) if isinstance(code, serializers.ChoiceField) else None


class AutoSchema(StandardizedErrorsAutoSchema):
    """drf-standardized-errors' error responses, with the headers and examples that fit them."""

    def get_override_parameters(self):
        return super().get_override_parameters() + RESPONSE_HEADERS

    def _get_error_response_examples(self):
        allowed = set(self._get_allowed_error_status_codes())
        return super()._get_error_response_examples() + [
            example for example in ERROR_EXAMPLES if allowed.intersection(example.status_codes)
        ]

    def _get_examples(self, serializer, direction, media_type, status_code=None, extras=None):
        examples = super()._get_examples(serializer, direction, media_type, status_code, extras)
        codes = _documented_codes(serializer) if direction == "response" else None
        if not codes:
            return examples
        # e.g. no `not_authenticated` example for the token endpoints, which never answer it.
        return {
            name: example
            for name, example in examples.items()
            if all(error.get("code") in codes for error in example.get("value", {}).get("errors", []))
        }


# --- Validation errors raised outside request serializers and filter sets ----------------
def field_error_codes(field: serializers.Field, name: str) -> list[str]:
    """The error codes a serializer field can raise, as drf-standardized-errors finds them."""
    return sorted(get_serializer_field_error_codes(field, name))


def document_validation_errors(errors: dict[str, Iterable[str]], *, actions: list[str] | None = None):
    """
    A view decorator: these attrs may come with these codes (in addition to the codes of
    the request serializer or filter set), for these actions (default: all).
    """

    def decorate(view):
        for attr, codes in errors.items():
            view = extend_validation_errors(sorted(codes), field_name=attr, actions=actions)(view)
        return view

    return decorate


def list_item(attr: str) -> str:
    """The attr of an item of a list field, as the schema names it: `messages.INDEX`."""
    return f"{attr}{package_settings.NESTED_FIELD_SEPARATOR}{package_settings.LIST_INDEX_IN_API_SCHEMA}"


# `?search=` of the lists that search (BoundedSearchFilter).
SEARCH_ERRORS = {"search": field_error_codes(BoundedSearchFilter.search_field(), "search")}
# `?before=` / `?after=` of message timelines: an unknown cursor, or both at once (TimelinePagination).
CURSOR_ERRORS = {param: ["invalid"] for param in TimelinePagination.cursor_params}


# --- List items in attrs ---------------------------------------------------------------------
def postprocess_indexed_attrs(result, generator, request, public):
    """
    A SPECTACULAR_SETTINGS postprocessing hook. drf-standardized-errors documents the error
    of a list item with an `attr` such as `participants.INDEX` (LIST_INDEX_IN_API_SCHEMA);
    responses name the item: `participants.0`. Such attrs become patterns, and the
    discriminators that map attr values to error components, which cannot map a pattern,
    are dropped (the `oneOf` they belong to still tells the components apart).
    """
    separator = package_settings.NESTED_FIELD_SEPARATOR
    index = package_settings.LIST_INDEX_IN_API_SCHEMA
    schemas = result.get("components", {}).get("schemas", {})

    def is_indexed(attr) -> bool:
        return isinstance(attr, str) and index in attr.split(separator)

    def pattern(attr: str) -> str:
        parts = [r"[0-9]+" if part == index else re.escape(part) for part in attr.split(separator)]
        return "^" + re.escape(separator).join(parts) + "$"

    for schema in schemas.values():
        attr = schema.get("properties", {}).get("attr", {})
        values = attr.get("enum") or []
        if len(values) == 1 and is_indexed(values[0]):
            schema["properties"]["attr"] = {
                "type": "string",
                "pattern": pattern(values[0]),
                "description": f"`{values[0]}`, where {index} is the item's position in the list, from 0.",
            }
        mapping = schema.get("discriminator", {}).get("mapping", {})
        if any(is_indexed(value) for value in mapping):
            del schema["discriminator"]
    return result


# --- Request examples: the bodies Swagger UI's "Try it out" offers ---------------------------
# The first example of an operation is what Swagger UI prefills, so each must work as sent:
# no made-up ids in optional fields. Together they are a first session: register (the account
# below), log in as it, then use the rest. test_api_docs.py sends each one, as-is.
EXAMPLE_EMAIL = "ada.lovelace@example.com"
EXAMPLE_PASSWORD = "analytical-engine-1843"
EXAMPLE_NEW_PASSWORD = "difference-engine-1822"
# Ids in a body cannot be known in advance: this one marks the value to replace.
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_REFRESH = "paste the refresh token from POST /api/token/"


def _request_example(name: str, value: dict, description: str = "") -> OpenApiExample:
    return OpenApiExample(name, value=value, description=description, request_only=True)


REGISTER_EXAMPLES = [
    _request_example(
        "New account",
        {"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD, "first_name": "Ada", "last_name": "Lovelace"},
        "Creates the account the other examples use (once per server: the address is then taken, 400). "
        "Then log in with the same email and password: `POST /api/token/`.",
    ),
]
TOKEN_OBTAIN_EXAMPLES = [
    _request_example(
        "Log in", {"email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}, "The account `POST /api/users/` creates."
    ),
]
TOKEN_REFRESH_EXAMPLES = [
    _request_example(
        "Refresh token", {"refresh": PLACEHOLDER_REFRESH}, "Replace the value with the `refresh` your login returned."
    ),
]
PASSWORD_CHANGE_EXAMPLES = [
    _request_example(
        "New password",
        {"current_password": EXAMPLE_PASSWORD, "new_password": EXAMPLE_NEW_PASSWORD},
        "For the account `POST /api/users/` creates; for yours, put your own current password.",
    ),
]
CONVERSATION_CREATE_EXAMPLES = [
    _request_example(
        "With one person",
        {"participants": [PLACEHOLDER_ID], "messages": [{"message_body": "Hello!"}]},
        "Replace the id with a `user_id` from `GET /api/users/?search=<name or email>`.",
    ),
]
PARTICIPANT_ADD_EXAMPLES = [
    _request_example(
        "Someone", {"user_id": PLACEHOLDER_ID}, "Replace the id with a `user_id` from `GET /api/users/?search=`."
    ),
]
CONVERSATION_UPDATE_EXAMPLES = [
    _request_example("Rename", {"title": "Weekend trip", "description": "Who brings what"}),
    _request_example(
        "Avatar",
        {"avatar": PLACEHOLDER_ID},
        "Replace the id with the `attachment_id` of an image you uploaded (`POST /api/attachments/`); null removes it.",
    ),
]
PARTICIPANT_ROLE_EXAMPLES = [_request_example("Make admin", {"role": "admin"})]
MESSAGE_SEND_EXAMPLES = [
    _request_example("Text", {"message_body": "Hello!"}),
    _request_example(
        "Reply that is safe to retry",
        {"message_body": "Agreed.", "parent_message": PLACEHOLDER_ID, "client_id": "my-device-0001"},
        "Replace `parent_message` with the `message_id` to reply to. Sending it again with the same "
        "`client_id` returns the first message (200) instead of a duplicate.",
    ),
]
MESSAGE_CREATE_EXAMPLES = [
    _request_example(
        "Text",
        {"conversation": PLACEHOLDER_ID, "message_body": "Hello!"},
        "Replace the id with a `conversation_id` of yours (`GET /api/conversations/`), or send with "
        "`POST /api/conversations/{conversation_id}/messages/`, where the id is in the path.",
    ),
]
MESSAGE_EDIT_EXAMPLES = [_request_example("New text", {"message_body": "Hello again!"})]
REACTION_EXAMPLES = [_request_example("Thumbs up", {"emoji": "\N{THUMBS UP SIGN}"})]
PIN_EXAMPLES = [
    _request_example(
        "A message", {"message_id": PLACEHOLDER_ID}, "Replace the id with a `message_id` of this conversation."
    )
]
MARK_READ_EXAMPLES = [
    _request_example("Everything", {}, "Up to the newest message."),
    _request_example("Up to a message", {"message_id": PLACEHOLDER_ID}, "Replace the id with a `message_id`."),
]

MEMBERSHIP_EXAMPLES = [
    _request_example("Mute", {"muted": True}, "Keep it in the inbox, without notifications or unread total."),
    _request_example("Archive", {"archived": True}, "Out of the inbox until the next message."),
    _request_example("Back to normal", {"muted": False, "archived": False}, "Unmute and unarchive."),
]


# --- Security schemes and servers ---------------------------------------------------------
# drf-spectacular lists components by name, so `basicAuth` and `cookieAuth` came before
# `jwtAuth`, and Swagger UI's Authorize dialog shows them in that order.
SECURITY_SCHEME_ORDER = ["jwtAuth", "tokenAuth", "basicAuth", "cookieAuth"]
SECURITY_SCHEME_DESCRIPTIONS = {
    "jwtAuth": "The `access` token of `POST /api/token/`, without the word Bearer.",
    "basicAuth": "Your email and password (for scripts; use HTTPS).",
    "cookieAuth": "The session of `/api-auth/login/`: a browser sends it by itself; there is nothing to enter.",
}


def postprocess_security_and_servers(result, generator, request, public):
    """
    A SPECTACULAR_SETTINGS postprocessing hook: Bearer first among the security schemes,
    each with a word on how to use it; and, when the schema is served, one server: the
    address it was requested at (scheme and host as the client sees them), so imports
    into Postman or client generators get a base URL.
    """
    components = result.get("components", {})
    schemes = components.get("securitySchemes", {})
    first = [name for name in SECURITY_SCHEME_ORDER if name in schemes]
    for name in first + sorted(set(schemes) - set(first)):
        scheme = schemes.pop(name)  # re-inserted in order
        if name in SECURITY_SCHEME_DESCRIPTIONS:
            scheme["description"] = SECURITY_SCHEME_DESCRIPTIONS[name]
        schemes[name] = scheme
    if request is not None:
        result["servers"] = [{"url": request.build_absolute_uri("/").rstrip("/"), "description": "This server."}]
    return result


class JWTScheme(SimpleJWTScheme):
    """Our JWTAuthentication (chats/tokens.py) is SimpleJWT's: documented as the same `jwtAuth`."""

    target_class = "chats.tokens.JWTAuthentication"
