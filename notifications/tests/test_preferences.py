"""
Notification preferences: GET/PATCH /api/users/me/notifications/ (per user), the per-conversation
level on the membership, and should_notify, the one rule that combines them.
"""
import pytest
from rest_framework.test import APIClient

from chats.tests.factories import make_conversation
from chats.tests.utils import assert_error
from notifications import preferences
from notifications.models import NotificationPreferences

pytestmark = pytest.mark.django_db

URL = "/api/users/me/notifications/"
DEFAULTS = {"push_enabled": True, "push_include_text": False, "email_digest_enabled": True,
            "email_digest_delay_minutes": 60}


class TestPerUser:
    def test_defaults_without_writing_a_row(self, alice, client_for):
        client = client_for(alice)
        body = client.get(URL).json()
        assert {k: body[k] for k in DEFAULTS} == DEFAULTS
        assert not NotificationPreferences.objects.exists()

    def test_patch_changes_only_the_fields_sent_and_is_per_user(self, alice, bob, client_for):
        response = client_for(alice).patch(URL, {"push_include_text": True, "email_digest_delay_minutes": 15},
                                           format="json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["push_include_text"] is True and body["email_digest_delay_minutes"] == 15
        assert body["push_enabled"] is True and body["email_digest_enabled"] is True
        again = client_for(alice).patch(URL, {"email_digest_enabled": False}, format="json").json()
        assert again["push_include_text"] is True and again["email_digest_enabled"] is False
        assert client_for(alice).get(URL).json() == again
        mine = NotificationPreferences.objects.get(user=alice)
        assert (mine.push_include_text, mine.email_digest_enabled, mine.email_digest_delay_minutes) == (True, False, 15)
        bobs = client_for(bob).get(URL).json()
        assert {k: bobs[k] for k in DEFAULTS} == DEFAULTS

    @pytest.mark.parametrize("payload, field", [
        ({"email_digest_delay_minutes": 1}, "email_digest_delay_minutes"),
        ({"email_digest_delay_minutes": 10081}, "email_digest_delay_minutes"),
        ({"email_digest_delay_minutes": "soon"}, "email_digest_delay_minutes"),
        ({"push_enabled": None}, "push_enabled"),
        ({"push_include_text": "maybe"}, "push_include_text"),
    ])
    def test_bad_values_are_400_on_their_field(self, alice, client_for, payload, field):
        assert_error(client_for(alice).patch(URL, payload, format="json"), 400, attr=field)
        assert not NotificationPreferences.objects.exists()

    def test_anonymous_is_401(self):
        api = APIClient()
        assert_error(api.get(URL), 401)
        assert_error(api.patch(URL, {"push_enabled": False}, format="json"), 401)


class TestPerConversation:
    def test_level_set_on_the_membership_endpoint(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        url = f"/api/conversations/{conversation.pk}/membership/"
        body = client_for(alice).patch(url, {"notifications": "mentions"}, format="json").json()
        assert body["notifications"] == "mentions" and body["muted"] is False
        assert client_for(bob).get(url).json()["notifications"] == "all"
        assert_error(client_for(alice).patch(url, {"notifications": "loud"}, format="json"), 400,
                     attr="notifications")


class TestShouldNotify:
    @pytest.mark.parametrize("muted, level, mentioned, expected", [
        (False, "all", False, True),
        (False, "all", True, True),
        (False, "mentions", True, True),
        (False, "mentions", False, False),  # also what "no mentions known" means
        (False, "none", True, False),
        (True, "all", True, False),  # muted wins over everything
        (True, "mentions", True, False),
    ])
    def test_the_rule(self, muted, level, mentioned, expected):
        assert preferences.should_notify(muted=muted, level=level, mentioned=mentioned) is expected
