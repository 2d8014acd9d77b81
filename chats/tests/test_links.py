"""
No dead link: the landing page, every same-origin page it links to and every page
those link to (API root, docs, login), crawled anonymously and logged in; the static
assets those pages load; every server URL written in README.md and docs/*.md, and every
relative file link there. A page answers 200 or sends the visitor to a login form.
"""
import re
from collections import deque
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from django.conf import settings
from django.test import Client, override_settings

from chats.tests.factories import PASSWORD, make_conversation
from chats.tests.pages import csrf_token, links_and_assets

pytestmark = pytest.mark.django_db

REPO = Path(settings.BASE_DIR)
MARKDOWN_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LOCAL_SERVER_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):8000(/[^\s)`'\"<>|\]]*)?")
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
LOGIN_FORMS = ("/api-auth/login/", "/admin/login/")
BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def browser(user=None) -> Client:
    """
    A browser; static files are served from the apps' folders (WhiteNoise's finders), as
    collectstatic's output would be, since the tests do not run collectstatic.
    """
    with override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True):
        client = Client(enforce_csrf_checks=True)
        page = client.get("/api-auth/login/")  # builds the middleware chain under these settings
        if user is not None:
            response = client.post("/api-auth/login/", {
                "username": user.email, "password": PASSWORD, "csrfmiddlewaretoken": csrf_token(page.content.decode()),
            })
            assert response.status_code == 302, response.content
    return client


def same_origin_path(base: str, href: str) -> str | None:
    url = urlsplit(urljoin("http://testserver" + base, href))
    if url.scheme not in ("http", "https") or url.netloc != "testserver":
        return None
    return url.path + (f"?{url.query}" if url.query else "")


def assert_page_answers(client: Client, path: str, who: str):
    """200, or redirects (e.g. /api -> /api/) ending at a page that answers or at a login form."""
    response = client.get(path, **BROWSER)
    for _ in range(3):
        if response.status_code not in (301, 302) or response["Location"].startswith(LOGIN_FORMS):
            break
        response = client.get(same_origin_path(path, response["Location"]), **BROWSER)
    if response.status_code in (301, 302):
        assert response["Location"].startswith(LOGIN_FORMS), (who, path, response["Location"])
    else:
        assert response.status_code == 200, (who, path, response.status_code, response.content[:300])
    return response


def crawl(client: Client, who: str, depth: int = 3) -> set[str]:
    """Every same-origin page within `depth` links of the landing page; asserts each one answers."""
    seen, assets = {"/"}, set()
    queue = deque([("/", 0)])
    while queue:
        path, level = queue.popleft()
        response = assert_page_answers(client, path, who)
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        links, page_assets = links_and_assets(response.content.decode())
        assets.update(filter(None, (same_origin_path(path, a) for a in page_assets)))
        if level == depth:
            continue
        for href in links:
            target = same_origin_path(path, href.split("#")[0]) if not href.startswith("#") else None
            if target and target not in seen:
                seen.add(target)
                queue.append((target, level + 1))
    for asset in sorted(assets):
        response = client.get(asset)
        assert response.status_code == 200, (who, "asset", asset, response.status_code)
    return seen


@pytest.fixture
def alice_with_a_conversation(alice, bob):
    make_conversation(alice, bob, messages=("hello",))
    return alice


def test_landing_page_links_what_the_issue_asks_for(client):
    response = client.get("/")
    assert response.status_code == 200
    links, assets = links_and_assets(response.content.decode())
    for path in ("/api/", "/api/docs/", "/api/redoc/", "/docs/websocket/", "/admin/"):
        assert path in links, path
    assert any(link.startswith("/api-auth/login/") for link in links)
    assert assets == []  # self-contained: nothing to fetch, from us or from the internet
    assert "$API/token/" in response.content.decode() and "Authorization: Bearer" in response.content.decode()


def test_every_page_reachable_from_the_landing_page_answers_anonymously():
    seen = crawl(browser(), "anonymous")
    assert {"/api/", "/api/docs/", "/api/redoc/", "/docs/websocket/", "/admin/"} <= seen


def test_every_page_reachable_from_the_landing_page_answers_logged_in(alice_with_a_conversation):
    seen = crawl(browser(alice_with_a_conversation), "logged in")
    assert {"/api/users/", "/api/conversations/", "/api/messages/", "/api/users/me/"} <= seen


def test_websocket_protocol_is_served_rendered(client):
    response = client.get("/docs/websocket/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "<h1>Live events over WebSockets</h1>" in page
    assert "<table>" in page and "<code>message.created</code>" in page
    assert client.head("/docs/websocket/").status_code == 200
    assert client.post("/docs/websocket/").status_code == 405


def server_urls_in_markdown() -> list[tuple[str, str]]:
    found = []
    for md in MARKDOWN_FILES:
        for match in LOCAL_SERVER_URL.finditer(md.read_text(encoding="utf-8")):
            found.append((md.name, match.group(1) or "/"))
    return sorted(set(found))


@pytest.mark.parametrize("source,path", server_urls_in_markdown())
def test_server_urls_written_in_the_docs_answer(source, path, alice_with_a_conversation):
    assert_page_answers(browser(), path, f"anonymous, from {source}")
    assert_page_answers(browser(alice_with_a_conversation), path, f"logged in, from {source}")


def test_the_docs_name_the_pages_they_should():
    paths = {path for _, path in server_urls_in_markdown()}
    assert {"/", "/api/", "/api/docs/", "/api/redoc/", "/docs/websocket/", "/admin/"} <= paths


@pytest.mark.parametrize("md", MARKDOWN_FILES, ids=lambda p: p.name)
def test_relative_file_links_in_the_docs_exist(md):
    for target in MARKDOWN_LINK.findall(md.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:|^#", target):
            continue
        assert (md.parent / target.split("#")[0]).exists(), (md.name, target)


def test_the_image_keeps_the_docs_the_server_renders():
    """The Dockerfile copies the project minus .dockerignore: docs/websocket.md must stay in."""
    ignored = [line.strip().rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()]
    ignored = [line for line in ignored if line and not line.startswith("#")]
    for pattern in ("docs", "docs/*", "docs/websocket.md", "*.md", "**/*.md"):
        assert pattern not in ignored, pattern
