"""Personal access tokens: long-lived credentials a user makes for their bots and scripts."""
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class PersonalAccessToken(models.Model):
    class Scope(models.TextChoices):
        READ = "read", "Read"  # GET (and HEAD, OPTIONS) of anything the user may read
        SEND = "send", "Send"  # every other method: sending, editing, marking read, ...

    # Public identifier; exposed as `token_id` (never the token itself).
    token_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Whose: the token acts as this user. The (user, created_at) index serves their list.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens",
                             db_index=False)
    name = models.CharField(max_length=100)
    # SHA-256 (hex) of the token: tokens carry 256 random bits, so a fast hash is enough; the
    # unique index is the lookup of every request authenticated by one.
    token_hash = models.CharField(max_length=64, unique=True)
    # The token's first characters, shown in lists to tell tokens apart.
    prefix = models.CharField(max_length=16)
    # Comma-separated Scope values, e.g. "read,send".
    scopes = models.CharField(max_length=32)
    created_at = models.DateTimeField(default=timezone.now)
    # Updated at most once a minute per token (authentication.py), not on every request.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "token_id"]
        indexes = [models.Index(fields=["user", "created_at"], name="pat_user_created_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"

    @property
    def scope_list(self) -> list[str]:
        return [scope for scope in self.scopes.split(",") if scope]
