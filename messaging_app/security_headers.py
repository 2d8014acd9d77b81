"""
Headers on every response that its view did not set itself; no I/O, a few dict look-ups.

- `Cache-Control: no-store` on the API (`/api/`, `/api-auth/`) and on any response to a
  request that carries credentials (an Authorization header or a session cookie): browsers
  and proxies keep no private message on disk. Views that choose their own caching keep it
  (the public schema is cached per release: messaging_app/api_docs.py).
- A Content-Security-Policy on every HTML page (landing page, rendered docs, browsable API,
  admin, login): scripts only from this host and never inline, no plugins, no framing, forms
  post only here. The API docs pages (Swagger UI, Redoc) set a looser one of their own.
"""
from django.conf import settings

API_PREFIXES = ("/api/", "/api-auth/")


def content_security_policy(**overrides: str) -> str:
    """The pages' policy, with directives replaced or added (`worker_src="'self' blob:"`)."""
    directives = {
        "default-src": "'self'",
        # No inline script: Django's admin and DRF's templates have none (their CSRF token is a
        # JSON data block, which is not executed).
        "script-src": "'self'",
        # Inline styles: `style` attributes in DRF's and Django's templates, our pages' <style>.
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data:",
        "font-src": "'self' data:",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    directives.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return "; ".join(f"{name} {value}" for name, value in directives.items())


PAGES_CONTENT_SECURITY_POLICY = content_security_policy()


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Cache-Control" not in response and (
            request.path.startswith(API_PREFIXES)
            or "HTTP_AUTHORIZATION" in request.META
            or settings.SESSION_COOKIE_NAME in request.COOKIES
        ):
            response["Cache-Control"] = "no-store"
        if "Content-Security-Policy" not in response and response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = PAGES_CONTENT_SECURITY_POLICY
        return response
