"""
The API's documentation pages: the OpenAPI schema, Swagger UI and Redoc (drf-spectacular),
served entirely by this app. Nothing they load comes from another host: the assets come
from drf-spectacular-sidecar, Redoc's page is ours (its stock page loads Google Fonts),
and a Content-Security-Policy keeps the bundles themselves on this host (Redoc's sidebar
would fetch its vendor's logo from cdn.redoc.ly).
"""
import hashlib
import re
import threading
from collections import OrderedDict

from django.http import HttpResponse, HttpResponseNotModified
from django.test.signals import setting_changed
from django.utils.cache import patch_vary_headers
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from messaging_app.security_headers import content_security_policy

# The pages' policy (messaging_app/security_headers.py) with two exceptions: inline scripts
# (the pages' start-up scripts) and Redoc's search, which runs in a worker made from a blob.
# Inline styles (injected by Swagger UI and Redoc) and data: images (the icons of Swagger
# UI's stylesheet) are allowed on every page.
DOCS_CONTENT_SECURITY_POLICY = content_security_policy(
    script_src="'self' 'unsafe-inline'", worker_src="'self' blob:"
)


def schema_filename(suffix: str) -> str:
    """`messaging_app-api.yaml`: the title, without spaces (drf-spectacular keeps them)."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', spectacular_settings.TITLE).lower()}.{suffix}"


class SchemaView(SpectacularAPIView):
    """
    The schema, generated once per release: each rendering (per server address, since
    `servers` names the host it was requested from, and per format) is kept in process memory,
    so an anonymous request costs a dictionary look-up instead of ~0.2-0.5 s of CPU. It carries
    an ETag and may be cached by clients for a few minutes. `?lang=` and `?version=` are ignored:
    either would generate (and keep) a schema per value sent.
    """

    @extend_schema(**SCHEMA_KWARGS)  # as drf-spectacular's: left out of the schema
    def get(self, request, *args, **kwargs):
        key = (request.build_absolute_uri("/"), request.accepted_media_type)
        entry = _rendered_schemas.get(key)
        if entry is None:
            entry = _rendered_schemas.put(key, self._render(request))
        content, content_type, etag = entry
        if etag in (value.strip() for value in request.headers.get("If-None-Match", "").split(",")):
            response = HttpResponseNotModified()
        else:
            response = HttpResponse(content, content_type=content_type)
            response["Content-Disposition"] = f'inline; filename="{schema_filename(request.accepted_renderer.format)}"'
        response["ETag"] = etag
        response["Cache-Control"] = f"public, max-age={SCHEMA_MAX_AGE}"
        patch_vary_headers(response, ["Accept"])
        return response

    def _render(self, request) -> tuple[bytes, str, str]:
        response = self._get_schema_response(request)
        response.accepted_renderer = request.accepted_renderer
        response.accepted_media_type = request.accepted_media_type
        response.renderer_context = self.get_renderer_context()
        response.render()
        return response.content, response["Content-Type"], f'"{hashlib.sha256(response.content).hexdigest()[:32]}"'

    def _get_version_parameter(self, request):
        return None


class _RenderedSchemas:
    """The few latest renderings (bounded: a wildcard ALLOWED_HOSTS admits any number of hosts)."""

    def __init__(self, size: int):
        self.size, self.entries, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
            return self.entries.get(key)

    def put(self, key, entry):
        with self.lock:
            self.entries[key] = entry
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return entry

    def clear(self, **kwargs):
        with self.lock:
            self.entries.clear()


SCHEMA_MAX_AGE = 300
_rendered_schemas = _RenderedSchemas(size=8)
# Tests that change settings (override_settings) get a freshly generated schema.
setting_changed.connect(_rendered_schemas.clear)


class _OnlyThisHost:
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SwaggerView(_OnlyThisHost, SpectacularSwaggerView):
    pass


class RedocView(_OnlyThisHost, SpectacularRedocView):
    template_name = "api_docs/redoc.html"
