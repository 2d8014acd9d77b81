"""Reading the server's HTML pages in tests: forms, their fields and links (stdlib parser only)."""
import html
import re
from html.parser import HTMLParser


class _Fields(HTMLParser):
    """The named fields of an HTML fragment: inputs, textareas and selects, with their values."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.fields: dict[str, dict] = {}
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name:
            self.fields[name] = {"tag": tag, "type": attrs.get("type", "text"), "value": attrs.get("value", "")}
        elif tag in ("textarea", "select") and name:
            self.fields[name] = {"tag": tag, "value": ""}
            self._textarea = name if tag == "textarea" else None

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.fields[self._textarea]["value"] += data


def form_in(page: str, container_id: str) -> dict[str, dict]:
    """The fields of the first form inside the element with this id (the browsable API's tabs)."""
    start = page.index(f'id="{container_id}"')
    end = page.index("</form>", start)
    parser = _Fields()
    parser.feed(page[start:end])
    return parser.fields


def html_form(page: str) -> dict[str, dict]:
    """The browsable API's "HTML form" tab of the POST form."""
    return form_in(page, "post-object-form")


def raw_data(page: str, method: str = "post") -> str:
    """The browsable API's "Raw data" tab content for POST (or "put", for PUT/PATCH)."""
    return form_in(page, f"{method}-generic-content-form")["_content"]["value"]


def csrf_token(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "link" and attrs.get("href"):
            self.assets.append(attrs["href"])
        elif tag in ("script", "img") and attrs.get("src"):
            self.assets.append(attrs["src"])


def links_and_assets(page: str) -> tuple[list[str], list[str]]:
    parser = _Links()
    parser.feed(page)
    return [html.unescape(u) for u in parser.links], [html.unescape(u) for u in parser.assets]
