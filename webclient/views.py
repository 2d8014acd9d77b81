"""
The reference web client's HTML shell at `/app/`. Everything else it needs is static
(webclient/static/webclient/) and the public API: this view only hands out the shell.

The shell is never cached (`no-store`), so a deploy's new hashed asset names reach browsers at
once. Its Content-Security-Policy is the site's, with one addition scoped to this page:
`connect-src` names the WebSocket origin of the host it was served from explicitly, as not
every browser lets `'self'` cover `ws:`/`wss:`; and `img-src` adds `blob:`, as attachments are
fetched with the JWT and shown from object URLs (an `<img src>` cannot send the Authorization header).
"""
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from messaging_app.security_headers import content_security_policy


@require_safe
@never_cache
def shell(request):
    response = render(request, "webclient/index.html")
    ws_scheme = "wss" if request.is_secure() else "ws"
    response["Content-Security-Policy"] = content_security_policy(
        connect_src=f"'self' {ws_scheme}://{request.get_host()}",
        img_src="'self' data: blob:",
    )
    return response
