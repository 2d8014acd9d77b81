"""
Query-string filters. Ids are matched as plain UUIDs (never validated against
other people's data), so a filter cannot reveal whether something exists.
"""
from datetime import timedelta, timezone
from uuid import UUID

import django_filters
from django.db import connections
from rest_framework import filters, serializers

from chats import search
from chats.models import Conversation, Message, MessageMention


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 bound, turned into UTC here so no database sees an out-of-range value."""

    def __init__(self, *args, param: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.param = param

    def filter(self, qs, value):
        if value is not None:
            try:
                # Offsets past +-16h and years pushed outside 1..9999 break database adapters.
                if abs(value.utcoffset() or timedelta(0)) >= timedelta(hours=16):
                    raise OverflowError
                value = value.astimezone(timezone.utc)
            except OverflowError:
                raise serializers.ValidationError({self.param: ["Date and time out of range."]})
        return super().filter(qs, value)


class ConversationFilter(django_filters.FilterSet):
    participant = django_filters.UUIDFilter(
        field_name="memberships__user_id", label="Only conversations this user_id takes part in."
    )
    created_after = UtcDateTimeFilter(
        param="created_after",
        field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)."
    )
    created_before = UtcDateTimeFilter(
        param="created_before",
        field_name="created_at", lookup_expr="lt", label="Created before (ISO 8601)."
    )

    # Applied by the view's queryset (selectors.conversation_list_for_user(archived=...)), where
    # it costs nothing; declared here so the value is validated (400) and documented.
    archived = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="_scoped_by_the_view",
        label="true: only the conversations you archived (default: your inbox, without them)."
    )

    class Meta:
        model = Conversation
        fields = ["participant", "created_after", "created_before", "archived"]

    def _scoped_by_the_view(self, queryset, name, value):
        return queryset


class MessageFilter(django_filters.FilterSet):
    conversation = django_filters.UUIDFilter(field_name="conversation_id", label="conversation_id.")
    sender = django_filters.UUIDFilter(field_name="sender_id", label="user_id of the sender.")
    parent_message = django_filters.UUIDFilter(
        field_name="parent_message_id", label="Only replies to this message_id."
    )
    sent_after = UtcDateTimeFilter(
        param="sent_after",
        field_name="sent_at", lookup_expr="gte", label="Sent at or after (ISO 8601)."
    )
    sent_before = UtcDateTimeFilter(
        param="sent_before",
        field_name="sent_at", lookup_expr="lt", label="Sent before (ISO 8601)."
    )
    # A choice, not a BooleanFilter: that one takes any other value as "no filter" instead of a 400.
    mentions_me = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_mentions_me",
        label="true: only messages that mention you (false: no filter).",
    )

    class Meta:
        model = Message
        fields = ["conversation", "sender", "parent_message", "sent_after", "sent_before", "mentions_me"]

    def filter_mentions_me(self, queryset, name, value):
        if value != "true":
            return queryset
        # The ids off the (user, conversation, message) mention index: one conversation's when known.
        mine = MessageMention.objects.filter(user=self.request.user)
        conversation = self.request.parser_context["kwargs"].get("conversation_id") or self.form.cleaned_data.get(
            "conversation"
        )
        try:
            mine = mine.filter(conversation_id=UUID(str(conversation))) if conversation else mine
        except ValueError:
            return queryset.none()  # the conversation view answers 404 before
        return queryset.filter(pk__in=mine.values("message_id"))


class BoundedSearchFilter(filters.SearchFilter):
    """`?search=`: whitespace-separated terms, all must match; at most 100 characters."""

    max_length = 100

    @classmethod
    def search_field(cls) -> serializers.CharField:
        """How the search term is checked (the schema documents its error codes)."""
        return serializers.CharField(
            required=False, allow_blank=True, trim_whitespace=False, max_length=cls.max_length
        )

    def get_search_terms(self, request):
        value = request.query_params.get(self.search_param, "")
        try:
            self.search_field().run_validation(value)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({self.search_param: exc.detail})
        return super().get_search_terms(request)


class MessageSearchFilter(BoundedSearchFilter):
    """
    `?search=` on the message lists: full-text search on the database's own index (chats/search.py),
    most relevant first unless `ordering=sent_at|-sent_at`. The view gets the words searched
    (`search_terms`) for the snippets.
    """

    search_description = (
        "Full-text search of message bodies (docs/search.md): every word (letters and digits; anything else "
        "separates words) must start a word of the message, case-insensitively. Most relevant first unless "
        "`ordering=sent_at|-sent_at`; each result carries a highlighted `snippet`. Deleted messages never match."
    )

    def filter_queryset(self, request, queryset, view):
        self.get_search_terms(request)  # the length check (400)
        text = request.query_params.get(self.search_param, "")
        if not text.strip():
            return queryset
        view.search_terms = search.search_terms(text, connections[queryset.db].vendor)
        ordering = request.query_params.get(MessageOrderingFilter.ordering_param, "").strip()
        ordering = ordering if ordering in search.ORDERINGS else "relevance"
        return search.message_search(queryset, view.search_terms, ordering=ordering)


class MessageOrderingFilter(filters.OrderingFilter):
    """`?ordering=` of the message lists: sent_at or -sent_at (default); relevance (default) with ?search=."""

    ordering_description = (
        "`-sent_at` (newest first, the default) or `sent_at`; with `search`, `relevance` (most relevant "
        "first, then newest) is the default."
    )

    def filter_queryset(self, request, queryset, view):
        if getattr(view, "search_terms", None) is not None:
            return queryset  # a search: MessageSearchFilter has ordered it
        return super().filter_queryset(request, queryset, view)
