"""The unsubscribe link of email digests: no login, the signed token is the credential."""
from django.http import HttpResponse
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications import digests

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Email digests</title></head>
<body><main><h1>Email digests</h1>{}</main></body></html>"""


@csrf_exempt  # the signed token is the credential; mail clients' one-click unsubscribe POSTs without a session
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token: str):
    """
    GET: a page with one button (a GET changes nothing: mail scanners follow links). POST (the
    button, or a mail client's RFC 8058 one-click): email digests off for the token's user.
    """
    if request.method == "GET":
        return HttpResponse(PAGE.format(
            f'<form method="post" action="{escape(request.path)}"><p>Stop the emails of unread messages?</p>'
            '<button type="submit">Unsubscribe</button></form>'
        ))
    if not digests.unsubscribe(token):
        return HttpResponse(PAGE.format("<p>This link is not valid.</p>"), status=404)
    return HttpResponse(PAGE.format("<p>Done: no more digests. You can turn them back on in your settings.</p>"))
