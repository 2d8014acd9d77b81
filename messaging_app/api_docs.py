"""
The API's documentation pages: the OpenAPI schema, Swagger UI and Redoc (drf-spectacular),
served entirely by this app. Nothing they load comes from another host: the assets come
from drf-spectacular-sidecar, Redoc's page is ours (its stock page loads Google Fonts),
and a Content-Security-Policy keeps the bundles themselves on this host (Redoc's sidebar
would fetch its vendor's logo from cdn.redoc.ly).
"""
import re

from drf_spectacular.settings import spectacular_settings
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

# Everything from this host, nothing from any other. Inline scripts and styles: the pages'
# start-up scripts, and the styles Swagger UI and Redoc inject; data: images are the icons
# of Swagger UI's stylesheet; Redoc's search runs in a worker made from a blob.
DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def schema_filename(suffix: str) -> str:
    """`messaging_app-api.yaml`: the title, without spaces (drf-spectacular keeps them)."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', spectacular_settings.TITLE).lower()}.{suffix}"


class SchemaView(SpectacularAPIView):
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if "Content-Disposition" in response:
            response["Content-Disposition"] = f'inline; filename="{schema_filename(response.accepted_renderer.format)}"'
        return response


class _OnlyThisHost:
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SwaggerView(_OnlyThisHost, SpectacularSwaggerView):
    pass


class RedocView(_OnlyThisHost, SpectacularRedocView):
    template_name = "api_docs/redoc.html"
