from rest_framework import serializers

from bots.models import PersonalAccessToken


class AccessTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What it is for, e.g. the bot's name.")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=PersonalAccessToken.Scope.choices), min_length=1, max_length=2,
        help_text="read: GET requests; send: every other request (sending, editing, marking read).",
    )


class AccessTokenSerializer(serializers.ModelSerializer):
    """A token as listed: never its value."""

    scopes = serializers.ListField(source="scope_list", child=serializers.CharField(), read_only=True)

    class Meta:
        model = PersonalAccessToken
        fields = ["token_id", "name", "prefix", "scopes", "created_at", "last_used_at"]
        read_only_fields = fields


class AccessTokenCreatedSerializer(AccessTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="Send it as `Authorization: Token <token>`. Shown only now."
    )

    class Meta(AccessTokenSerializer.Meta):
        fields = AccessTokenSerializer.Meta.fields + ["token"]
        read_only_fields = fields
