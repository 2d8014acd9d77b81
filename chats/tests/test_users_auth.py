"""
Registration, login (JWT, HTTP Basic, session), the own-account endpoint and
finding people: who is listed, how search matches, and that no response ever
carries a password or its hash.
"""
import base64

import pytest

from chats.models import User
from chats.tests.factories import PASSWORD, UserFactory, make_conversation
from chats.tests.utils import assert_error

pytestmark = pytest.mark.django_db

REGISTER_URL = "/api/users/"
ME_URL = "/api/users/me/"
USERS_URL = "/api/users/"
TOKEN_URL = "/api/token/"
REFRESH_URL = "/api/token/refresh/"

PROFILE_FIELDS = {"user_id", "email", "first_name", "last_name", "phone_number", "role", "created_at"}
STRONG_PASSWORD = "plum-Orchard-47-lantern"


def registration(**overrides):
    payload = {
        "email": "dana.smith@example.org",
        "password": STRONG_PASSWORD,
        "first_name": "Dana",
        "last_name": "Smith",
    }
    payload.update(overrides)
    return payload


def keys_in(value):
    """Every dict key anywhere inside a decoded JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_in(item)


def assert_no_password(response, *users):
    """No `password`-like key, and neither a hash nor the clear password in the body."""
    keys = set(keys_in(response.json()))
    assert not {k for k in keys if "password" in k.lower()}, keys
    text = response.content.decode()
    for user in users:
        user.refresh_from_db()
        assert user.password and user.password not in text
    assert PASSWORD not in text and STRONG_PASSWORD not in text


def basic(email, password):
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    return f"Basic {token}"


def names(response):
    assert response.status_code == 200, response.content
    return {(u["first_name"], u["last_name"]) for u in response.json()["results"]}


# --- Registration ------------------------------------------------------------------
def test_register_returns_201_with_exactly_the_profile_fields(api):
    """Registering answers 201 with the profile fields and nothing else."""
    response = api.post(REGISTER_URL, registration(phone_number="+14155550123"), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == PROFILE_FIELDS
    assert body["email"] == "dana.smith@example.org"
    assert body["first_name"] == "Dana" and body["last_name"] == "Smith"
    assert body["phone_number"] == "+14155550123"
    assert body["role"] == "guest"
    user = User.objects.get(pk=body["user_id"])
    assert user.check_password(STRONG_PASSWORD)
    assert_no_password(response, user)


def test_register_stores_the_email_lower_cased(api):
    """The email is stored (and returned) lower-cased, so it is a case-insensitive login."""
    response = api.post(REGISTER_URL, registration(email="Dana.Smith@EXAMPLE.Org"), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["email"] == "dana.smith@example.org"
    assert User.objects.get(pk=response.json()["user_id"]).email == "dana.smith@example.org"


@pytest.mark.parametrize("variant", ["dana.smith@example.org", "DANA.SMITH@EXAMPLE.ORG", "Dana.Smith@Example.org"])
def test_register_rejects_an_email_already_taken_in_any_case(api, variant):
    """An email differing only in case from an existing one is a 400 on `email`."""
    UserFactory(email="dana.smith@example.org")

    response = api.post(REGISTER_URL, registration(email=variant), format="json")

    assert_error(response, 400, attr="email")
    assert User.objects.filter(email__iexact="dana.smith@example.org").count() == 1


@pytest.mark.parametrize(
    "password",
    ["short1", "12345678901", "password", "dana.smith@example.org"],
    ids=["too-short", "numeric", "common", "like-email"],
)
def test_register_rejects_a_weak_password(api, password):
    """Django's password validators apply: a weak password is a 400 on `password`."""
    response = api.post(REGISTER_URL, registration(password=password), format="json")

    assert_error(response, 400, attr="password")
    assert not User.objects.filter(email="dana.smith@example.org").exists()


@pytest.mark.parametrize(
    "phone", ["12345", "phone", "+0123456789", "+1 415 555 0123", "+1234567890123456"],
    ids=["too-short", "letters", "leading-zero", "spaces", "too-long"],
)
def test_register_rejects_an_invalid_phone_number(api, phone):
    """A phone number not in international format is a 400 on `phone_number`."""
    response = api.post(REGISTER_URL, registration(phone_number=phone), format="json")

    assert_error(response, 400, attr="phone_number")
    assert not User.objects.filter(email="dana.smith@example.org").exists()


@pytest.mark.parametrize("phone", ["+14155550123", "4915112345678", ""])
def test_register_accepts_a_valid_or_empty_phone_number(api, phone):
    """A phone number in international format (or none) is stored as given."""
    response = api.post(REGISTER_URL, registration(phone_number=phone), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["phone_number"] == phone
    assert User.objects.get(pk=response.json()["user_id"]).phone_number == phone


def test_register_ignores_a_role_and_staff_flags_in_the_payload(api):
    """A client cannot choose its role (or become staff): new accounts are guests."""
    response = api.post(
        REGISTER_URL,
        registration(role="admin", is_staff=True, is_superuser=True),
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["role"] == "guest"
    user = User.objects.get(pk=response.json()["user_id"])
    assert user.role == User.Role.GUEST
    assert not user.is_staff and not user.is_superuser


def test_register_needs_no_authentication_and_missing_fields_are_400(api):
    """Registration is open, but every required field is checked."""
    response = api.post(REGISTER_URL, {}, format="json")

    body = assert_error(response, 400)
    assert {"email", "password", "first_name", "last_name"} <= {e["attr"] for e in body["errors"]}


# --- No password anywhere -----------------------------------------------------------
def test_no_response_contains_a_password_or_its_hash(alice, bob, client_for, api):
    """Register, me, the user list and a conversation never expose a password or hash."""
    registered = api.post(REGISTER_URL, registration(), format="json")
    assert registered.status_code == 201, registered.content
    assert_no_password(registered, User.objects.get(pk=registered.json()["user_id"]))

    conversation = make_conversation(alice, bob, messages=("hi",))
    client = client_for(alice)

    me = client.get(ME_URL)
    assert me.status_code == 200
    assert_no_password(me, alice)

    listed = client.get(USERS_URL)
    assert listed.status_code == 200 and listed.json()["results"]
    assert_no_password(listed, alice, bob)

    searched = client.get(USERS_URL, {"search": "bob"})
    assert searched.status_code == 200 and searched.json()["results"]
    assert_no_password(searched, bob)

    detail = client.get(f"/api/conversations/{conversation.pk}/")
    assert detail.status_code == 200
    assert_no_password(detail, alice, bob)


# --- Login --------------------------------------------------------------------------
def test_token_login_with_email_in_another_case(api):
    """POST /api/token/ matches the email case-insensitively and returns access+refresh."""
    user = UserFactory(email="erin@example.com")

    response = api.post(TOKEN_URL, {"email": "ERIN@Example.COM", "password": PASSWORD}, format="json")

    assert response.status_code == 200, response.content
    tokens = response.json()
    assert {"access", "refresh"} <= set(tokens)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = api.get(ME_URL)
    assert me.status_code == 200 and me.json()["user_id"] == str(user.pk)


def test_token_login_with_a_wrong_password_is_401_in_the_error_shape(alice, api):
    """A wrong password is a 401 with the one error shape (and no tokens)."""
    response = api.post(TOKEN_URL, {"email": alice.email, "password": "wrong-" + PASSWORD}, format="json")

    body = assert_error(response, 401)
    assert "access" not in body and "refresh" not in body


def test_token_login_of_an_unknown_email_is_401(api):
    """An unknown email gets the same 401 as a wrong password."""
    response = api.post(TOKEN_URL, {"email": "nobody@example.com", "password": PASSWORD}, format="json")

    assert_error(response, 401)


def test_token_login_of_an_inactive_user_is_401(api):
    """A deactivated account cannot obtain tokens."""
    user = UserFactory(is_active=False)

    response = api.post(TOKEN_URL, {"email": user.email, "password": PASSWORD}, format="json")

    assert_error(response, 401)


def test_token_refresh_returns_a_working_access_token(alice, api):
    """The refresh token from login yields a new access token that authenticates."""
    tokens = api.post(TOKEN_URL, {"email": alice.email, "password": PASSWORD}, format="json").json()

    response = api.post(REFRESH_URL, {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 200, response.content
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert api.get(ME_URL).json()["user_id"] == str(alice.pk)


def test_token_refresh_with_a_garbage_token_is_401(api):
    """An invalid refresh token is a 401 in the error shape."""
    response = api.post(REFRESH_URL, {"refresh": "not-a-token"}, format="json")

    assert_error(response, 401)


# --- Authentication schemes ---------------------------------------------------------
def test_jwt_bearer_authenticates(alice, api):
    """Authorization: Bearer <access> authenticates /api/users/me/."""
    access = api.post(TOKEN_URL, {"email": alice.email, "password": PASSWORD}, format="json").json()["access"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")

    response = api.get(ME_URL)

    assert response.status_code == 200, response.content
    assert set(response.json()) == PROFILE_FIELDS | {"presence_visible", "unread_count", "unread_mentions"}
    assert response.json()["email"] == alice.email


def test_invalid_bearer_token_is_401_in_the_error_shape(alice, api):
    """A forged or garbage bearer token is rejected with 401."""
    api.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")

    assert_error(api.get(ME_URL), 401)


@pytest.mark.parametrize("email_case", [str.lower, str.upper, str.title], ids=["lower", "upper", "title"])
def test_http_basic_authenticates_with_case_insensitive_email(alice, api, email_case):
    """HTTP Basic with email:password authenticates, whatever the email's case."""
    api.credentials(HTTP_AUTHORIZATION=basic(email_case(alice.email), PASSWORD))

    response = api.get(ME_URL)

    assert response.status_code == 200, response.content
    assert response.json()["user_id"] == str(alice.pk)


def test_http_basic_with_a_wrong_password_is_401(alice, api):
    """HTTP Basic with a wrong password is a 401 in the error shape."""
    api.credentials(HTTP_AUTHORIZATION=basic(alice.email, "nope"))

    assert_error(api.get(ME_URL), 401)


def test_session_login_authenticates(alice, api):
    """A Django session (login with email and password) authenticates /api/users/me/."""
    assert api.login(email=alice.email.upper(), password=PASSWORD)

    response = api.get(ME_URL)

    assert response.status_code == 200, response.content
    assert response.json()["user_id"] == str(alice.pk)


def test_session_force_login_authenticates(alice, client):
    """A session created by force_login (plain Django client) is accepted too."""
    client.force_login(alice)

    response = client.get(ME_URL)

    assert response.status_code == 200, response.content
    assert response.json()["email"] == alice.email


@pytest.mark.parametrize("url", [ME_URL, USERS_URL, "/api/conversations/", "/api/messages/"])
def test_unauthenticated_requests_are_401_in_the_error_shape(db, api, url):
    """Without credentials every endpoint but registration answers 401 (not 403)."""
    response = api.get(url)

    assert_error(response, 401, code="not_authenticated")
    assert "WWW-Authenticate" in response.headers


# --- Finding people -----------------------------------------------------------------
def test_user_list_without_search_shows_only_people_i_share_a_conversation_with(
    alice, bob, carol, mallory, client_for
):
    """Without `search`: my conversation partners only, never me, never strangers."""
    make_conversation(alice, bob)
    make_conversation(carol, alice)
    make_conversation(mallory, bob)  # Bob's partner, not mine.

    assert names(client_for(alice).get(USERS_URL)) == {("Bob", "Baker"), ("Carol", "Cook")}


def test_user_list_without_search_lists_a_partner_once(alice, bob, client_for):
    """Someone sharing several conversations with me is listed once."""
    make_conversation(alice, bob)
    make_conversation(bob, alice)

    response = client_for(alice).get(USERS_URL)

    assert response.json()["count"] == 1
    assert [u["user_id"] for u in response.json()["results"]] == [str(bob.pk)]


def test_user_list_without_conversations_is_empty(alice, bob, client_for):
    """Someone with no conversations sees nobody without searching."""
    assert names(client_for(alice).get(USERS_URL)) == set()


def test_user_list_shows_only_the_summary_fields(alice, bob, client_for):
    """Other people are shown by id and name only: no email, phone or role."""
    make_conversation(alice, bob)

    results = client_for(alice).get(USERS_URL).json()["results"]

    assert results == [{"user_id": str(bob.pk), "first_name": "Bob", "last_name": "Baker"}]


@pytest.mark.parametrize("term", ["bob", "BAKER", "aKe", "bob baker", "Baker  Bob"])
def test_search_matches_name_words_case_insensitively(alice, bob, carol, client_for, term):
    """Each word of `search` must be in the first or last name, ignoring case."""
    assert names(client_for(alice).get(USERS_URL, {"search": term})) == {("Bob", "Baker")}


def test_search_needs_every_word_to_match(alice, bob, carol, client_for):
    """All words must match: "bob cook" matches neither Bob Baker nor Carol Cook."""
    assert names(client_for(alice).get(USERS_URL, {"search": "bob cook"})) == set()


def test_search_finds_strangers_by_name(alice, mallory, client_for):
    """Searching reaches people I have no conversation with."""
    assert names(client_for(alice).get(USERS_URL, {"search": "outsider"})) == {("Mallory", "Outsider")}


@pytest.mark.parametrize("transform", [str, str.upper], ids=["as-stored", "upper-case"])
def test_search_matches_an_exact_email(alice, bob, carol, client_for, transform):
    """An exact email (any case) finds its owner."""
    response = client_for(alice).get(USERS_URL, {"search": transform(carol.email)})

    assert [u["user_id"] for u in response.json()["results"]] == [str(carol.pk)]


@pytest.mark.parametrize("partial", ["example.com", "@example.com", "user", "Carol@"])
def test_search_does_not_match_a_partial_email(alice, bob, carol, client_for, partial):
    """Emails match exactly or not at all, so addresses cannot be guessed piecemeal."""
    UserFactory(first_name="Zed", last_name="Zulu", email="carol@example.com")

    assert names(client_for(alice).get(USERS_URL, {"search": partial})) == set()


def test_search_never_lists_me(alice, client_for):
    """My own name or email does not find me."""
    client = client_for(alice)

    assert names(client.get(USERS_URL, {"search": "alice"})) == set()
    assert names(client.get(USERS_URL, {"search": alice.email})) == set()


def test_inactive_users_are_not_listed(alice, bob, client_for):
    """Deactivated accounts appear neither in search nor among my partners."""
    make_conversation(alice, bob)
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    client = client_for(alice)

    assert names(client.get(USERS_URL)) == set()
    assert names(client.get(USERS_URL, {"search": "bob"})) == set()
    assert names(client.get(USERS_URL, {"search": bob.email})) == set()


def test_search_of_only_whitespace_behaves_like_no_search(alice, bob, carol, client_for):
    """A blank `search` lists my partners, not everybody."""
    make_conversation(alice, bob)

    assert names(client_for(alice).get(USERS_URL, {"search": "   "})) == {("Bob", "Baker")}


def test_search_longer_than_100_characters_is_400(alice, client_for):
    """`search` is limited to 100 characters."""
    client = client_for(alice)

    assert client.get(USERS_URL, {"search": "a" * 100}).status_code == 200
    assert_error(client.get(USERS_URL, {"search": "a" * 101}), 400, attr="search")


def test_search_with_a_nul_character_is_400(alice, client_for):
    """A NUL character in `search` is rejected, not sent to the database."""
    assert_error(client_for(alice).get(USERS_URL, {"search": "bo\x00b"}), 400, attr="search")


@pytest.mark.django_db
def test_invalid_jwt_is_one_clean_401_error(api):
    """A broken token gets a single token_not_valid error, not SimpleJWT's nested detail."""
    api.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
    body = assert_error(api.get("/api/users/me/"), 401, code="token_not_valid")
    assert len(body["errors"]) == 1 and body["errors"][0]["attr"] is None
    body = assert_error(api.post("/api/token/refresh/", {"refresh": "garbage"}, format="json"), 401)
    assert body["errors"] == [{"code": "token_not_valid", "detail": "The token is invalid or expired.", "attr": None}]


@pytest.mark.django_db
def test_ping_answers_who_you_are_with_no_query_beyond_auth(alice, client_for, api, django_assert_num_queries):
    """GET /api/ping/ needs authentication and does no database work of its own."""
    client = client_for(alice)
    with django_assert_num_queries(0):
        response = client.get("/api/ping/")
    assert response.json() == {"status": "ok", "user_id": str(alice.pk)}
    assert_error(api.get("/api/ping/"), 401)


def test_an_access_token_already_verified_is_still_refused_once_it_expires(alice, api):
    """Verified tokens are remembered per process (chats/tokens.py): their expiry is checked every time."""
    import time
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken.for_user(alice)
    # `exp` is in whole seconds: a 1 s lifetime could be over almost at once on a busy machine.
    token.set_exp(lifetime=timedelta(seconds=3))
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.get("/api/ping/").status_code == 200
    assert api.get("/api/ping/").status_code == 200  # the remembered verification
    time.sleep(max(0.0, token["exp"] - time.time()) + 1.1)
    response = api.get("/api/ping/")
    assert response.status_code == 401
    assert_error(response, 401, "token_not_valid")


def test_a_deactivated_user_with_a_remembered_token_is_refused_at_once(alice, api):
    from rest_framework_simplejwt.tokens import AccessToken

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(alice)}")
    assert api.get("/api/ping/").status_code == 200
    User.objects.filter(pk=alice.pk).update(is_active=False)
    response = api.get("/api/ping/")
    assert response.status_code == 401
