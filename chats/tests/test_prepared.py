"""
Hot reads compiled once (chats/prepared.py): the same rows as the ORM for any values, one
compilation per connection and shape, and the fast paths' responses equal to the general ones.
"""
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chats import selectors
from chats.models import Conversation, ConversationMembership, Message, User
from chats.prepared import PreparedRead
from chats.tests.factories import UserFactory, make_conversation, send

pytestmark = pytest.mark.django_db


def people_of(ids):
    return (
        ConversationMembership.objects.filter(conversation_id__in=ids)
        .order_by("user__first_name", "user__last_name", "user__email")
        .values_list("conversation_id", "user__user_id", "user__first_name")
    )


class TestSameRowsAsTheOrm:
    def test_values_dicts_with_a_value_used_twice_and_a_shape(self, alice, bob, carol):
        for other in (bob, carol):
            conversation = make_conversation(alice, other)
            send(conversation, other, f"hi from {other.first_name}")
        make_conversation(bob, carol)
        read = PreparedRead(
            lambda user, offset, limit: selectors.conversation_rows(selectors.conversation_list_for_user(user=user))[
                offset:limit
            ],
            model=Conversation,
            values={"user": User._meta.pk},
        )
        for user in (alice, bob, carol, alice):  # recompiled for none of them: same shape
            for offset, limit in ((0, 20), (1, 2)):
                expected = list(
                    selectors.conversation_rows(selectors.conversation_list_for_user(user=user))[offset:limit]
                )
                got = read.read(values={"user": user.pk}, shape={"offset": offset, "limit": limit})
                assert got == expected and got

    def test_tuples_for_a_list_of_ids_of_any_length(self, alice, bob, carol):
        conversations = [make_conversation(alice, bob), make_conversation(alice, carol), make_conversation(bob, carol)]
        read = PreparedRead(people_of, model=ConversationMembership, values={"ids": Conversation._meta.pk})
        for chosen in (conversations[:1], conversations[1:], conversations, [conversations[2], conversations[0]]):
            ids = [c.pk for c in chosen]
            assert read.read(values={"ids": ids}) == list(people_of(ids))

    def test_flat_values_and_no_rows(self, alice, bob):
        conversation = make_conversation(alice, bob)
        sent = [send(conversation, alice, str(n)).pk for n in range(3)]
        read = PreparedRead(
            lambda c: Message.objects.filter(conversation_id=c).values_list("pk", flat=True),
            model=Message,
            values={"c": Conversation._meta.pk},
        )
        assert read.read(values={"c": conversation.pk}) == sent[::-1]  # Meta.ordering: newest first
        assert read.read(values={"c": uuid.uuid4()}) == []

    def test_a_value_the_statement_does_not_use_is_refused(self, alice):
        read = PreparedRead(
            lambda user: User.objects.values_list("pk", flat=True), model=User, values={"user": User._meta.pk}
        )
        with pytest.raises(ValueError, match="not found"):
            read.read(values={"user": alice.pk})


def test_each_shape_is_compiled_once_per_connection(alice, bob, monkeypatch):
    read = PreparedRead(people_of, model=ConversationMembership, values={"ids": Conversation._meta.pk})
    compiled = []
    original = read._compile
    monkeypatch.setattr(read, "_compile", lambda *args: compiled.append(args[2]) or original(*args))
    one, two, three = (make_conversation(alice, bob) for _ in range(3))
    for ids in ([one.pk], [two.pk], [one.pk, two.pk], [three.pk, one.pk], [three.pk]):
        read.read(values={"ids": ids})
    assert len(compiled) == 2  # lists of one id, lists of two


class TestFastPathsAnswerLikeTheGeneralOnes:
    def test_inbox_default_order_equals_the_same_order_asked_for(self, alice, client_for):
        others = UserFactory.create_batch(5)
        for other in others:
            send(make_conversation(alice, other), other, f"from {other.first_name}")
        client = client_for(alice)
        for page in ("?page_size=2", "?page_size=2&page=2", "?page_size=2&page=3", ""):
            fast = client.get(f"/api/conversations/{page}").json()
            ordered = f"{page}{'&' if page else '?'}ordering=-last_activity_at,-created_at"
            general = client.get(f"/api/conversations/{ordered}").json()
            assert fast["results"] == general["results"] and fast["results"]
            assert fast["count"] == general["count"] == 5

    def test_newest_timeline_page_equals_the_filtered_path(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        for n in range(7):
            send(conversation, alice if n % 2 else bob, f"message {n}")
        url = f"/api/conversations/{conversation.pk}/messages/"
        client = client_for(bob)
        for page in ("?page_size=3", "?page_size=3&page=3", ""):
            fast = client.get(f"{url}{page}").json()
            general = client.get(f"{url}{page}{'&' if page else '?'}ordering=-sent_at").json()
            assert fast["results"] == general["results"] and fast["results"]
            assert fast["count"] == general["count"] == 7

    def test_the_fast_paths_run_the_same_queries_as_before(self, alice, bob, client_for):
        conversation = make_conversation(alice, bob)
        send(conversation, bob, "hello")
        client = client_for(alice)
        # The inbox: its page, its participants (a page holding the whole list needs no count).
        # The timeline: the conversation check, the page's ids, their rows.
        for url, expected in (("/api/conversations/", 2), (f"/api/conversations/{conversation.pk}/messages/", 3)):
            client.get(url)  # compile
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url).status_code == 200
            assert len(queries) == expected, [q["sql"] for q in queries]

    def test_a_malformed_or_foreign_conversation_id_is_a_404(self, alice, bob, carol, client_for):
        theirs = make_conversation(bob, carol)
        for conversation_id in ("not-a-uuid", str(uuid.uuid4()), str(theirs.pk)):
            response = client_for(alice).get(f"/api/conversations/{conversation_id}/messages/")
            assert response.status_code == 404
            assert response.json()["errors"][0]["code"] == "not_found"


class TestLockingRead:
    def test_the_conversation_comes_locked_and_whole_inside_a_transaction(self, alice, bob):
        from django.db import transaction

        conversation = make_conversation(alice, bob)
        send(conversation, bob, "hello")
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            locked = selectors.conversation_for_update(conversation_id=conversation.pk)
        fresh = Conversation.objects.get(pk=conversation.pk)
        fields = [f.attname for f in Conversation._meta.concrete_fields]
        assert [getattr(locked, f) for f in fields] == [getattr(fresh, f) for f in fields]
        assert not locked._state.adding and locked._state.db == "default"
        sql = queries[0]["sql"]
        assert bool(re.search(r"FOR (NO KEY )?UPDATE", sql)) == connection.features.has_select_for_update
        # On PostgreSQL the lock an UPDATE itself takes, which foreign-key checks do not wait on.
        assert ("FOR NO KEY UPDATE" in sql) == connection.features.has_select_for_no_key_update

    @pytest.mark.django_db(transaction=True)  # really outside any transaction
    def test_outside_a_transaction_it_refuses_rather_than_lock_nothing(self, alice, bob):
        from django.db.transaction import TransactionManagementError

        conversation = make_conversation(alice, bob)
        with pytest.raises(TransactionManagementError):
            selectors.conversation_for_update(conversation_id=conversation.pk)
        with pytest.raises(Conversation.DoesNotExist):
            from django.db import transaction

            with transaction.atomic():
                selectors.conversation_for_update(conversation_id=uuid.uuid4())


def test_uuid_text_prints_every_form_a_database_sends_as_str_of_the_uuid():
    from chats.prepared import uuid_text

    value = uuid.uuid4()
    for sent in (value, str(value), str(value).upper(), value.hex, value.hex.upper()):
        assert uuid_text(sent, None, None) == str(value), sent
    assert uuid_text(None, None, None) is None


def test_json_columns_come_back_as_the_orm_decodes_them(alice, bob):
    """The inbox's JSON columns (the last message's reactions and mentions) are decoded with orjson: same values."""
    conversation = make_conversation(alice, bob)
    message = send(conversation, bob, "hi @alice")
    summary = [{"emoji": "👍", "user_ids": [str(alice.pk), str(bob.pk)]}, {"emoji": "🎉", "user_ids": [str(bob.pk)]}]
    Message.objects.filter(pk=message.pk).update(reaction_summary=summary, mentions=[str(alice.pk)])
    read = PreparedRead(
        lambda user: selectors.conversation_rows(selectors.conversation_list_for_user(user=user)),
        model=Conversation,
        values={"user": User._meta.pk},
    )
    (row,) = read.read(values={"user": alice.pk})
    assert row == list(selectors.conversation_rows(selectors.conversation_list_for_user(user=alice)))[0]
    assert row["last_message__reaction_summary"] == summary
    assert row["last_message__mentions"] == [str(alice.pk)]


def test_json_value_falls_back_to_json_where_orjson_refuses():
    from chats.prepared import json_value

    assert json_value('{"a": [1, "b"]}', None, None) == {"a": [1, "b"]}
    assert json_value(b"[]", None, None) == []
    assert json_value(str(2**70), None, None) == 2**70  # past 64 bits: orjson refuses, json reads it
    nan = json_value("NaN", None, None)
    assert nan != nan  # json's NaN
    assert json_value("not json", None, None) == "not json"  # as JSONField.from_db_value does
    assert json_value(None, None, None) is None
    assert json_value([1], None, None) == [1]  # already decoded by the driver
