"""
Follows every door a newcomer opens on a running server: the landing page, each page it
links to, each link of those pages, and every server URL written in README.md and docs/*.md.

    python scripts/crawl_links.py BASE_URL [--email E --password P]

Fails (exit 1) on any page or asset that answers an error (4xx/5xx, except the 401 that an
anonymous visitor meets on an API endpoint that needs a login), on a page that shows a
traceback or Django's debug page, and on any asset (script, stylesheet, image, font) loaded
from another host. With --email/--password it logs in through the browsable API's login
form (CSRF included) and crawls again as that user, where every link must answer 2xx.
Standard library only, so it runs before or without the project's virtualenv.
"""
import argparse
import http.cookiejar
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED_BASE = "http://127.0.0.1:8000"
# Links that act instead of showing something (a GET would change state or is refused).
SKIP = re.compile(r"^/(api-auth/logout/|admin/logout/)")
# Pages whose text would reveal a crash or a debug page.
BROKEN_PAGE = re.compile(
    r"Traceback \(most recent call last\)|<title>[^<]*(Error|Exception)[^<]*</title>|Page not found"
)
MAX_PAGES = 400
# What a browser sends: HTML first, anything else accepted.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.pages: list[str] = []  # followed as pages
        self.assets: list[str] = []  # loaded by the page itself: must be ours

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.pages.append(attrs["href"])
        elif tag == "link" and attrs.get("href") and attrs.get("rel", "") != "canonical":
            self.assets.append(attrs["href"])
        elif tag in ("script", "img", "iframe") and attrs.get("src"):
            self.assets.append(attrs["src"])


def documented_urls(base: str) -> list[str]:
    """Every http://127.0.0.1:8000/... URL in the README and docs, moved to `base`."""
    urls = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for found in re.findall(r"http://127\.0\.0\.1:8000(/[^\s)`'\"<>]*)?", path.read_text()):
            urls.append(base + (found or "/"))
    return urls


class Crawler:
    def __init__(self, base: str, opener, anonymous: bool):
        self.base = base.rstrip("/")
        self.host = urllib.parse.urlsplit(self.base).netloc
        self.opener = opener
        self.anonymous = anonymous
        self.seen: set[str] = set()
        self.failures: list[str] = []

    def fetch(self, url: str, accept: str = BROWSER_ACCEPT) -> tuple[int, str, str]:
        request = urllib.request.Request(url, headers={"Accept": accept})
        try:
            with self.opener.open(request, timeout=30) as response:
                body = response.read().decode("utf-8", "replace")
                return response.status, response.headers.get("Content-Type", ""), body
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read().decode("utf-8", "replace")

    def crawl(self, start: list[str], referrers: dict[str, str]) -> None:
        queue = list(start)
        while queue and len(self.seen) < MAX_PAGES:
            url = urllib.parse.urldefrag(queue.pop(0))[0]
            if url in self.seen:
                continue
            self.seen.add(url)
            status, content_type, body = self.fetch(url)
            where = f"{url} (linked from {referrers.get(url, 'the start list')})"
            path = urllib.parse.urlsplit(url).path
            if status == 401 and self.anonymous and path.startswith("/api/"):
                continue  # an API endpoint asking an anonymous visitor to log in
            if status >= 400:
                self.failures.append(f"{status} {where}")
                continue
            if "html" not in content_type:
                continue
            if BROKEN_PAGE.search(body):
                self.failures.append(f"error page or traceback: {where}")
            parser = Links()
            parser.feed(body)
            for asset in parser.assets:
                absolute = urllib.parse.urljoin(url, asset)
                parts = urllib.parse.urlsplit(absolute)
                if parts.scheme in ("http", "https") and parts.netloc != self.host:
                    self.failures.append(f"asset from another host {absolute}: {where}")
                elif parts.scheme in ("http", "https") and absolute not in self.seen:
                    self.seen.add(absolute)
                    asset_status = self.fetch(absolute, accept="*/*")[0]
                    if asset_status >= 400:
                        self.failures.append(f"{asset_status} asset {absolute}: {where}")
            for link in parser.pages:
                absolute = urllib.parse.urljoin(url, link)
                parts = urllib.parse.urlsplit(absolute)
                if parts.netloc != self.host or parts.scheme not in ("http", "https") or SKIP.match(parts.path):
                    continue
                referrers.setdefault(absolute, url)
                queue.append(absolute)


def login(base: str, opener, email: str, password: str) -> None:
    login_url = f"{base}/api-auth/login/"
    with opener.open(login_url, timeout=30) as response:
        page = response.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not token:
        raise SystemExit("the login page has no CSRF token")
    data = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token.group(1), "username": email, "password": password, "next": "/api/"}
    ).encode()
    request = urllib.request.Request(login_url, data=data, headers={"Referer": login_url})
    with opener.open(request, timeout=30) as response:
        if "/api-auth/login/" in response.url:
            raise SystemExit(f"logging in as {email} failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("--email")
    parser.add_argument("--password")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    start = [f"{base}/", *documented_urls(base)]

    failures = []
    runs = [("anonymous", None)]
    if args.email:
        runs.append((args.email, (args.email, args.password)))
    for who, credentials in runs:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        if credentials:
            login(base, opener, *credentials)
        crawler = Crawler(base, opener, anonymous=credentials is None)
        crawler.crawl(start, {})
        print(f"crawl as {who}: {len(crawler.seen)} URLs, {len(crawler.failures)} problems")
        failures += [f"[{who}] {failure}" for failure in crawler.failures]
    for failure in failures:
        print("  " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
