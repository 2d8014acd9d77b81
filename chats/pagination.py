"""
Pagination. Every list: page numbers (`?page=N&page_size=M`, 20 by default,
capped at 100). Message timelines also take keyset cursors, which cost the same
at any depth of history (no OFFSET, no COUNT):

- `?before=<message_id>`: the messages just older than it, newest first
  (scrolling back);
- `?after=<message_id>`: the messages just newer than it, oldest first
  (catching up after a disconnect).

In cursor mode `count` is null and `next`/`previous` carry cursors.

TimelinePagination pages ids, not rows: the view loads the rows of the page's ids
(selectors.message_rows), so the page is chosen on the timeline index alone.
"""
from collections.abc import Callable
from functools import cached_property, partial
from uuid import UUID

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param


# Query parameters that change only the order or the page of a list, never what it holds.
NON_FILTERING_PARAMS = {"page", "page_size", "ordering", "format"}
# ... and of those, the ones that leave a list in its default order: the hot reads' fast paths
# (statements compiled once, chats/prepared.py) serve exactly these requests.
PLAIN_PAGE_PARAMS = NON_FILTERING_PARAMS - {"ordering"}


class CountingPaginator(Paginator):
    """
    A paginator that counts only when it must. The first page is read one row long: if that row
    is not there, the page is the whole list and its length is the count (most inboxes, member
    lists and searches fit one page: no COUNT(*) for them). Otherwise, and for later pages, the
    view's `known_count()` if it gives one, else COUNT(*) as Django's Paginator does.
    """

    def __init__(self, *args, known_count: Callable[[], int | None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.known_count = known_count

    @cached_property
    def count(self) -> int:
        known = self.known_count() if self.known_count is not None else None
        return super().count if known is None else known

    def page(self, number):
        if str(number) != "1" or self.orphans:
            return super().page(number)
        head = list(self.object_list[0:self.per_page + 1])
        if len(head) <= self.per_page:
            self.count = len(head)  # the whole list (replaces the cached property on this instance)
        return self._get_page(head[: self.per_page], 1, self)


class StandardPagination(PageNumberPagination):
    """
    `?page=N&page_size=M`: 20 per page by default, at most 100 (larger asks are capped).
    The count costs a query only when the first page does not hold the whole list (CountingPaginator).
    """

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
    django_paginator_class = CountingPaginator


class KnownCountPagination(StandardPagination):
    """For a list view with `known_count()` (a count kept elsewhere, or a cheap one): no COUNT(*) of the page query."""

    def paginate_queryset(self, queryset, request, view=None):
        known = getattr(view, "known_count", None) if view is not None else None
        self.django_paginator_class = partial(CountingPaginator, known_count=known)
        return super().paginate_queryset(queryset, request, view)


class TimelinePagination(KnownCountPagination):
    cursor_params = ("before", "after")

    def paginate_queryset(self, queryset, request, view=None):
        given = [p for p in self.cursor_params if request.query_params.get(p)]
        self.cursor_mode = bool(given)
        if not given:
            # Ids only: with the sender joined, MariaDB's planner may start from the users
            # table when a conversation has few people, and sort its whole history (37 s for
            # the newest page of 1,000,000 messages between two people).
            if hasattr(view, "page_ids"):
                ids = view.page_ids(queryset)
            elif isinstance(queryset, QuerySet):
                ids = queryset.values_list("pk", flat=True)
            else:  # already ids, sliceable (selectors.timeline_ids)
                ids = queryset
            return list(super().paginate_queryset(ids, request, view))
        if len(given) > 1:
            raise serializers.ValidationError({"before": ["Use either before or after, not both."]})
        self.request = request
        self.direction = given[0]
        # The cursor must be in this very timeline (filters included), not just visible.
        anchor = self._anchor(queryset, request)
        size = self.get_page_size(request)
        at, pk = anchor["sent_at"], anchor["pk"]
        # The plain range (sent_at <= / >= at) lets the planner seek straight to the cursor on
        # the timeline index; the OR settles ties. Ids only, from the index: measured flat at any
        # depth of a 1,000,000-message conversation on MariaDB and PostgreSQL, where selecting
        # whole joined rows made both walk half the history.
        if self.direction == "before":
            page = queryset.filter(Q(sent_at__lt=at) | Q(sent_at=at, message_id__lt=pk), sent_at__lte=at)
            page = page.order_by("-sent_at", "-message_id")
        else:
            page = queryset.filter(Q(sent_at__gt=at) | Q(sent_at=at, message_id__gt=pk), sent_at__gte=at)
            page = page.order_by("sent_at", "message_id")
        ids = list(page.values_list("pk", flat=True)[: size + 1])
        self.has_more = len(ids) > size
        self.ids = ids[:size]
        return self.ids

    def _anchor(self, queryset, request) -> dict:
        raw = request.query_params[self.direction]
        try:
            anchor_id = UUID(raw)
        except ValueError:
            anchor_id = None
        anchor = queryset.filter(pk=anchor_id).values("pk", "sent_at").first() if anchor_id else None
        if anchor is None:
            raise serializers.ValidationError({self.direction: ["No message of this timeline has this id."]})
        return anchor

    def _cursor_link(self, param: str, message_id) -> str:
        url = self.request.build_absolute_uri()
        for name in (*self.cursor_params, self.page_query_param):
            url = remove_query_param(url, name)
        return replace_query_param(url, param, str(message_id))

    def get_paginated_response(self, data):
        if not self.cursor_mode:
            return super().get_paginated_response(data)
        further = self.direction  # keep going the same way ...
        back = "after" if further == "before" else "before"  # ... or turn around
        next_link = self._cursor_link(further, self.ids[-1]) if self.has_more else None
        previous_link = self._cursor_link(back, self.ids[0]) if self.ids else None
        return Response({"count": None, "next": next_link, "previous": previous_link, "results": data})

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["properties"]["count"].update(
            nullable=True, description="Total number of results; null in cursor mode (before/after)."
        )
        return response

    def get_schema_operation_parameters(self, view):
        return super().get_schema_operation_parameters(view) + [
            {
                "name": "before",
                "required": False,
                "in": "query",
                "description": "Cursor: the messages just older than this message_id, newest first.",
                "schema": {"type": "string", "format": "uuid"},
            },
            {
                "name": "after",
                "required": False,
                "in": "query",
                "description": "Cursor: the messages just newer than this message_id, oldest first.",
                "schema": {"type": "string", "format": "uuid"},
            },
        ]
