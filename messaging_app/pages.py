"""
The server's few HTML pages outside the API: the landing page at `/` and the
WebSocket protocol (docs/websocket.md, rendered) at `/docs/websocket/`.
Self-contained: no external assets, so they work offline and with DEBUG off.
"""
from django.conf import settings
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_safe
from markdown_it import MarkdownIt

DOCS = {"websocket": settings.BASE_DIR / "docs" / "websocket.md"}

# CommonMark plus tables; raw HTML in the Markdown is escaped, not passed through.
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


@require_safe
def landing(request):
    return render(request, "pages/landing.html")


@require_safe
def websocket_protocol(request):
    text = DOCS["websocket"].read_text(encoding="utf-8")
    return render(
        request,
        "pages/doc.html",
        {"title": "WebSocket protocol", "source": "docs/websocket.md", "body": mark_safe(_markdown.render(text))},
    )
