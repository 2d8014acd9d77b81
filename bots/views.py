"""Thin views of personal access tokens (services for writes, selectors for reads; others' tokens: 404)."""
from django.http import Http404
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from bots import selectors, services
from bots.models import PersonalAccessToken
from bots.serializers import AccessTokenCreatedSerializer, AccessTokenCreateSerializer, AccessTokenSerializer
from chats.pagination import StandardPagination
from chats.schema import document_validation_errors


@document_validation_errors({"name": ["too_many_tokens"]})
class AccessTokenListView(GenericAPIView):
    serializer_class = AccessTokenSerializer
    pagination_class = StandardPagination
    queryset = PersonalAccessToken.objects.none()  # the schema's model; requests use the selector

    @extend_schema(summary="Your personal access tokens", description="Never their values.",
                   responses={200: AccessTokenSerializer(many=True)})
    def get(self, request):
        page = self.paginate_queryset(selectors.access_token_list_for_user(user=request.user))
        return self.get_paginated_response(AccessTokenSerializer(page, many=True).data)

    @extend_schema(
        summary="Make a personal access token",
        description=(
            "For bots and scripts: send it as `Authorization: Token <token>`. The answer carries the `token`: "
            "the only time it is shown (only its hash is kept). Scopes: `read` (GET requests), `send` (every "
            "other request). With `read` it also opens a WebSocket: `{\"type\": \"auth\", \"token\": <token>}` "
            "(docs/websocket.md). No token may manage tokens, passwords or webhooks. Requests with it are "
            "throttled like yours. At most ACCESS_TOKENS_MAX_PER_USER (20)."
        ),
        request=AccessTokenCreateSerializer,
        responses={201: AccessTokenCreatedSerializer},
        examples=[OpenApiExample(
            "A bot that reads and sends", request_only=True, value={"name": "My bot", "scopes": ["read", "send"]},
        )],
    )
    def post(self, request):
        serializer = AccessTokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, value = services.access_token_create(user=request.user, **serializer.validated_data)
        token.token = value
        return Response(AccessTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class AccessTokenDetailView(GenericAPIView):
    serializer_class = AccessTokenSerializer
    queryset = PersonalAccessToken.objects.none()

    @extend_schema(summary="Revoke a personal access token", description="It stops working at once, and "
                   "the WebSockets it opened close (4401) within seconds. Any other id is a 404.",
                   responses={204: None})
    def delete(self, request, token_id):
        token = selectors.access_token_for_user(user=request.user, token_id=token_id)
        if token is None:
            raise Http404("No token with this id.")
        services.access_token_revoke(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
