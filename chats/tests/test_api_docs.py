"""
The documentation a client developer uses: the OpenAPI schema at /api/schema/, Swagger UI at
/api/docs/ and Redoc at /api/redoc/.

- Every operation's default request body, the one Swagger UI's "Try it out" prefills, succeeds
  when sent as-is by a logged-in user, with only the path parameters filled in.
- Swagger UI's Authorize dialog offers Bearer first and keeps it across reloads.
- The schema names its server and downloads under a file name without spaces.
- Nothing the docs pages load comes from another host.
"""
import json
import re
from urllib.parse import quote, urljoin, urlsplit

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.test import override_settings
from rest_framework.test import APIClient

from attachments.services import attachment_create
from attachments.tests.helpers import png_upload
from bots.services import access_token_create
from chats.models import Conversation, User
from chats.schema import EXAMPLE_EMAIL, PLACEHOLDER_ID, PLACEHOLDER_REFRESH
from chats.tests.factories import UserFactory, make_conversation
from notifications import push
from notifications.services import webhook_create
from notifications.tests.helpers import PUSH_KEYS

HTTP_METHODS = ["get", "put", "post", "patch", "delete"]


def get_schema(client: APIClient, **extra) -> dict:
    response = client.get("/api/schema/", {"format": "json"}, **extra)
    assert response.status_code == 200
    return json.loads(response.content)


def resolve(schema: dict, node):
    while isinstance(node, dict) and "$ref" in node:
        *_, kind, name = node["$ref"].split("/")
        node = schema["components"][kind][name]
    return node


# Swagger UI's placeholders for values the schema gives no example, default or enum for.
SWAGGER_UI_STRING_SAMPLES = {
    "uuid": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "email": "user@example.com",
    "date-time": "2019-08-24T14:15:22Z",
    "date": "2019-08-24",
    "uri": "https://example.com/",
}


def sample_from_schema(schema: dict, node: dict):
    """The value Swagger UI makes up from a schema: example, default, first enum, or a placeholder."""
    node = resolve(schema, node)
    if "allOf" in node:  # one schema of all the parts' properties
        parts = [resolve(schema, part) for part in node["allOf"]]
        node = {key: value for key, value in node.items() if key != "allOf"}
        for part in parts:
            node = {**part, **node, "properties": {**part.get("properties", {}), **node.get("properties", {})}}
    for combinator in ("oneOf", "anyOf"):  # the first choice
        if combinator in node:
            return sample_from_schema(schema, node[combinator][0])
    if "example" in node:
        return node["example"]
    if "default" in node:
        return node["default"]
    if node.get("enum"):
        return node["enum"][0]
    kind = node.get("type", "object" if "properties" in node else "string")
    if kind == "object":
        return {
            name: sample_from_schema(schema, prop)
            for name, prop in node.get("properties", {}).items()
            if not resolve(schema, prop).get("readOnly")  # a request leaves read-only fields out
        }
    if kind == "array":
        return [sample_from_schema(schema, node.get("items", {}))]
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return True
    return SWAGGER_UI_STRING_SAMPLES.get(node.get("format"), "string")


def default_body(schema: dict, operation: dict):
    """
    The request body Swagger UI prefills (its media type selector starts on the first type):
    the first of the media type's examples, else its example, else one made up from its schema.
    """
    if "requestBody" not in operation:
        return None
    content = resolve(schema, operation["requestBody"])["content"]
    media_type = next(iter(content))
    if set(content) == {"multipart/form-data"}:  # a file upload: Swagger UI offers a file picker
        return FILE_UPLOAD
    assert media_type == "application/json", "Swagger UI would offer a form, not JSON, first"
    media = content[media_type]
    if media.get("examples"):
        return resolve(schema, next(iter(media["examples"].values())))["value"]
    if "example" in media:
        return media["example"]
    return sample_from_schema(schema, media["schema"])


def default_query(schema: dict, operation: dict) -> dict:
    """
    The query parameters Swagger UI sends untouched: those with a default, and the required ones
    with the example it prefills (each must have one).
    """
    query = {}
    for parameter in map(lambda p: resolve(schema, p), operation.get("parameters", [])):
        if parameter["in"] != "query":
            continue
        if parameter.get("required"):
            examples = [example["value"] for example in parameter.get("examples", {}).values()]
            example = parameter.get("example", examples[0] if examples else None)
            assert example is not None, f"{parameter['name']} is required: it needs an example to send as-is"
            query[parameter["name"]] = quote(str(example))
        elif "default" in parameter.get("schema", {}):
            query[parameter["name"]] = parameter["schema"]["default"]
    return query


# The operations whose example cannot work as-is: a body field names something of the reader's
# own (a person, a conversation, a refresh token) that no document can know in advance. Their
# examples say so and carry a marked placeholder (PLACEHOLDER_ID, PLACEHOLDER_REFRESH) in that
# field and nowhere else; the test fills that one field in, as the reader would, and the rest
# of the example must then work as-is.
BODY_FIELDS_TO_FILL = {
    # Other participants are people; your own id alone is refused (no conversation with yourself).
    ("post", "/api/conversations/"): {"participants": lambda world: [str(world["carol"].pk)]},
    # The flat send names its conversation in the body; the nested send has it in the path.
    ("post", "/api/messages/"): {"conversation": lambda world: str(world["conversation"].pk)},
    ("post", "/api/conversations/{conversation_id}/participants/"): {"user_id": lambda world: str(world["carol"].pk)},
    ("post", "/api/conversations/{conversation_id}/pins/"): {"message_id": lambda world: str(world["message"].pk)},
    # Refresh tokens are issued at login: a secret of the reader's own.
    ("post", "/api/token/refresh/"): {"refresh": lambda world: world["login"]()["refresh"]},
    ("post", "/api/token/blacklist/"): {"refresh": lambda world: world["login"]()["refresh"]},
}
PLACEHOLDERS = {PLACEHOLDER_ID, PLACEHOLDER_REFRESH}
# Path user_ids that are another participant's (fill_path gives the user's own: leaving).
OTHER_PARTICIPANT = {("patch", "/api/conversations/{conversation_id}/participants/{user_id}/")}
# An upload (POST /api/attachments/) has no example to send as-is: the reader picks a file, as here.
FILE_UPLOAD = object()

# First the two that make the example account and log it in, last the one that changes its password.
FIRST = [("post", "/api/users/"), ("post", "/api/token/")]
LAST = [("post", "/api/users/me/password/")]


def operations_in_session_order(schema: dict) -> list[tuple[str, str, dict]]:
    operations = {
        (method, path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    middle = [key for key in operations if key not in FIRST + LAST]
    return [(method, path, operations[(method, path)]) for method, path in FIRST + middle + LAST]


def fill_path(path: str, world: dict) -> str:
    """Path parameters from real objects: a conversation of the user's, their message in it, themself."""
    values = {
        "conversation_id": world["conversation"].pk,
        "message_id": world["message"].pk,
        "user_id": world["me"].pk,  # DELETE .../participants/{user_id}/: leaving
        "attachment_id": world["attachment"].pk,  # an image the user uploaded
        "webhook_id": world["webhook"].pk,  # a webhook of the user's
        "token_id": world["access_token"].pk,  # a personal access token of the user's
        "subscription_id": world["push_subscription"].pk,  # a browser the user registered for push
    }
    filled = re.sub(r"\{(\w+)\}", lambda match: str(values[match.group(1)]), path)
    assert "{" not in filled
    return filled


@pytest.mark.django_db
def test_every_default_example_succeeds_as_is_for_a_logged_in_user():
    """
    Walks the schema as served, like a developer in Swagger UI: registers with the prefilled
    body, logs in with the prefilled body, authorizes with the access token (Bearer), then runs
    every other operation with its prefilled body and only the path parameters filled in.
    """
    client = APIClient()
    schema = get_schema(client)
    carol = UserFactory(first_name="Carol")
    access = None
    world = {"carol": carol}
    ran = []

    def login():
        body = default_body(schema, schema["paths"]["/api/token/"]["post"])
        response = client.post("/api/token/", body, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    world["login"] = login

    for method, path, operation in operations_in_session_order(schema):
        if access:
            # Fresh objects for each operation: a group the user owns (so its details and roles can
            # change) and the user's message in it.
            world["other"] = UserFactory()
            world["conversation"] = make_conversation(world["me"], world["other"], UserFactory(), messages=("Hi",))
            world["message"] = world["conversation"].messages.get()
            world["attachment"] = attachment_create(uploader=world["me"], upload=png_upload())
            world["me"].webhooks.all().delete()  # at most WEBHOOKS_MAX_PER_USER, as tokens
            world["me"].access_tokens.all().delete()
            world["webhook"] = webhook_create(owner=world["me"], url="https://hooks.example.com/docs")
            world["access_token"] = access_token_create(user=world["me"], name="docs", scopes=["read"])[0]
            world["me"].push_subscriptions.all().delete()
            world["push_subscription"] = push.subscription_register(
                user=world["me"], endpoint="https://push.example.com/docs", **PUSH_KEYS
            )[0]
        body = default_body(schema, operation)
        for field, fill in BODY_FIELDS_TO_FILL.get((method, path), {}).items():
            placeholder = body[field][0] if isinstance(body[field], list) else body[field]
            assert placeholder in PLACEHOLDERS, f"{method} {path}: {field} is not a marked placeholder"
            body[field] = fill(world)
        url = fill_path(path, world) if access else path
        if (method, path) in OTHER_PARTICIPANT:  # the owner's own role does not change: someone else's
            url = url.replace(str(world["me"].pk), str(world["other"].pk))
        credentials = {"HTTP_AUTHORIZATION": f"Bearer {access}"} if access and operation.get("security") else {}
        query = default_query(schema, operation)
        if query:
            url += "?" + "&".join(f"{name}={value}" for name, value in query.items())
        if body is FILE_UPLOAD:
            response = client.post(url, {"file": png_upload()}, format="multipart", **credentials)
        else:
            response = client.generic(
                method.upper(),
                url,
                json.dumps(body) if body is not None else "",
                content_type="application/json",
                **credentials,
            )
        assert 200 <= response.status_code < 300, (method, path, body, response.status_code, response.content)
        ran.append((method, path))
        if (method, path) == ("post", "/api/token/"):
            access = response.json()["access"]  # Authorize: Bearer <access>
            world["me"] = User.objects.get(email=EXAMPLE_EMAIL)

    assert len(ran) == len(set(ran)) == sum(
        method in HTTP_METHODS for item in schema["paths"].values() for method in item
    )
    # The examples did what they say: the account exists with its new password, and Ada
    # started a conversation with Carol.
    me = User.objects.get(email=EXAMPLE_EMAIL)
    assert me.check_password("difference-engine-1822")
    assert Conversation.objects.filter(participants=me).filter(participants=carol).exists()


def test_the_default_send_example_is_only_a_text():
    """No made-up `parent_message` (or other id) in the send Swagger UI prefills."""
    schema = get_schema(APIClient())
    for path in ["/api/conversations/{conversation_id}/messages/"]:
        assert default_body(schema, schema["paths"][path]["post"]) == {"message_body": "Hello!"}


def security_scheme_names(schema: dict) -> list[str]:
    return list(schema["components"]["securitySchemes"])


def test_bearer_comes_first_in_the_authorize_dialog():
    """Swagger UI lists the security schemes in the schema's order: JWT first, the session last."""
    client = APIClient()
    as_json = get_schema(client)
    as_yaml = yaml.safe_load(client.get("/api/schema/").content)  # what a browser gets by default
    for schema in (as_json, as_yaml):
        assert security_scheme_names(schema) == ["jwtAuth", "tokenAuth", "basicAuth", "cookieAuth"]
        assert schema["components"]["securitySchemes"]["jwtAuth"]["scheme"] == "bearer"
        assert "nothing to enter" in schema["components"]["securitySchemes"]["cookieAuth"]["description"]
    operation = as_json["paths"]["/api/conversations/"]["get"]
    assert operation["security"][0] == {"jwtAuth": []}


def swagger_settings(html: str) -> dict:
    match = re.search(r"const swaggerSettings = (\{.*?\});", html, re.S)
    assert match, "Swagger UI's settings are not in the page"
    return json.loads(match.group(1))


def test_swagger_ui_persists_authorization_and_calls_no_validator():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    settings = swagger_settings(response.content.decode())
    assert settings["persistAuthorization"] is True
    # Otherwise Swagger UI shows a badge fetched from validator.swagger.io.
    assert settings["validatorUrl"] is None


def test_the_schema_names_the_server_it_is_served_from():
    client = APIClient()
    assert [server["url"] for server in get_schema(client)["servers"]] == ["http://testserver"]
    # Behind the TLS-terminating ingress (SECURE_PROXY_SSL_HEADER).
    with override_settings(ALLOWED_HOSTS=["chat.example.com"]):
        schema = get_schema(client, HTTP_HOST="chat.example.com", HTTP_X_FORWARDED_PROTO="https")
    assert [server["url"] for server in schema["servers"]] == ["https://chat.example.com"]


@pytest.mark.parametrize(
    "query, filename", [({}, "messaging_app-api.yaml"), ({"format": "json"}, "messaging_app-api.json")]
)
def test_the_schema_downloads_under_a_name_without_spaces(query, filename):
    response = APIClient().get("/api/schema/", query)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'inline; filename="{filename}"'


def test_the_description_links_the_websocket_guide():
    """A real link, to the page the server serves docs/websocket.md at."""
    client = APIClient()
    description = get_schema(client)["info"]["description"]
    link = re.search(r"\[[^\]]+\]\((/docs/websocket/)\)", description)
    assert link
    page = client.get(link.group(1), HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert "auth" in page.content.decode()  # the protocol's first frame, rendered


# --- Nothing from another host ------------------------------------------------------------------
HOST = "testserver"
# Fetch directives and the sources each may name: this host, inline code, data: and blob: URLs.
SAME_HOST_SOURCES = {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}


def references(text: str, *, html: bool) -> list[str]:
    """URLs a page or stylesheet loads: src/href attributes (HTML), url(...) and @import (CSS)."""
    found = re.findall(r"""url\(\s*['"]?([^'")\s]+)""", text) + re.findall(r"""@import\s+['"]([^'"]+)""", text)
    if html:
        found += re.findall(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)""", text)
    return found


def assert_loads_only_from_this_host(url: str, text: str, *, html: bool, seen: set):
    for reference in references(text, html=html):
        if reference.startswith(("data:", "#")):
            continue
        absolute = urljoin(url, reference)
        assert urlsplit(absolute).netloc == HOST, f"{url} loads {absolute}"
        path = urlsplit(absolute).path
        if not path.startswith("/static/") or path in seen:
            continue
        seen.add(path)
        found = finders.find(path.removeprefix("/static/"))
        assert found, f"{url} references {path}, which is not a static file"
        if path.endswith(".css"):
            with open(found, encoding="utf-8") as stylesheet:
                assert_loads_only_from_this_host(absolute, stylesheet.read(), html=False, seen=seen)
        if path.endswith(".js"):
            with open(found, encoding="utf-8") as script:
                assert not re.search(r"fonts\.(googleapis|gstatic)\.com", script.read()), path


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_load_nothing_from_another_host(page):
    response = APIClient().get(page)
    assert response.status_code == 200
    seen = set()
    assert_loads_only_from_this_host(f"http://{HOST}{page}", response.content.decode(), html=True, seen=seen)
    assert any(path.endswith(".js") for path in seen)  # the bundles were followed
    # What the bundles fetch at run time (Redoc's sidebar asks cdn.redoc.ly for a logo) the
    # browser refuses: every fetch directive names this host only.
    policy = dict(
        (directive.split()[0], set(directive.split()[1:]))
        for directive in response["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == {"'self'"}
    for directive, sources in policy.items():
        if directive.endswith("-src"):
            assert sources <= SAME_HOST_SOURCES, (directive, sources)
