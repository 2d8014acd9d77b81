"""
Query-string filters. Ids are matched as plain UUIDs (never validated against
other people's data), so a filter cannot reveal whether something exists.
"""
from datetime import timedelta, timezone

import django_filters
from rest_framework import filters, serializers

from chats.models import Conversation, Message


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

    class Meta:
        model = Message
        fields = ["conversation", "sender", "parent_message", "sent_after", "sent_before"]


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
