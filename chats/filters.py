"""
Query-string filters. Ids are matched as plain UUIDs (never validated against
other people's data), so a filter cannot reveal whether something exists.
"""
import django_filters
from rest_framework import filters, serializers

from chats.models import Conversation, Message


class ConversationFilter(django_filters.FilterSet):
    participant = django_filters.UUIDFilter(
        field_name="memberships__user_id", label="Only conversations this user_id takes part in."
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Created at or after (ISO 8601)."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Created before (ISO 8601)."
    )

    class Meta:
        model = Conversation
        fields = ["participant", "created_after", "created_before"]


class MessageFilter(django_filters.FilterSet):
    conversation = django_filters.UUIDFilter(field_name="conversation_id", label="conversation_id.")
    sender = django_filters.UUIDFilter(field_name="sender_id", label="user_id of the sender.")
    parent_message = django_filters.UUIDFilter(
        field_name="parent_message_id", label="Only replies to this message_id."
    )
    sent_after = django_filters.IsoDateTimeFilter(
        field_name="sent_at", lookup_expr="gte", label="Sent at or after (ISO 8601)."
    )
    sent_before = django_filters.IsoDateTimeFilter(
        field_name="sent_at", lookup_expr="lt", label="Sent before (ISO 8601)."
    )

    class Meta:
        model = Message
        fields = ["conversation", "sender", "parent_message", "sent_after", "sent_before"]


class BoundedSearchFilter(filters.SearchFilter):
    """`?search=`: whitespace-separated terms, all must match; at most 100 characters."""

    max_length = 100

    def get_search_terms(self, request):
        value = request.query_params.get(self.search_param, "")
        field = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=self.max_length)
        try:
            field.run_validation(value)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({self.search_param: exc.detail})
        return super().get_search_terms(request)
