"""Demo users and a conversation, for trying the API by hand. Safe to run twice."""
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chats import services
from chats.models import Conversation, User

DEMO_PASSWORD = "demo-password-123"
DEMO_USERS = [
    ("alice@example.com", "Alice", "Archer"),
    ("bob@example.com", "Bob", "Baker"),
    ("carol@example.com", "Carol", "Cook"),
]


class Command(BaseCommand):
    help = "Create demo users (alice, bob, carol @example.com) and a conversation, idempotently."

    def add_arguments(self, parser):
        parser.add_argument(
            "--server",
            default=f"http://127.0.0.1:{os.environ.get('PORT') or 8000}",
            help="Base URL the printed links use (default: port $PORT, else 8000).",
        )
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (never on a real deployment)."
        )

    @transaction.atomic
    def handle(self, *args, server, force=False, **options):
        server = server.rstrip("/")
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates accounts with a known password; use --force outside DEBUG.")
        users = []
        for email, first, last in DEMO_USERS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = services.user_register(
                    email=email, password=DEMO_PASSWORD, first_name=first, last_name=last
                )
                self.stdout.write(f"created user {email}")
            users.append(user)
        alice, bob, _ = users
        demo = Conversation.objects.filter(created_by=alice, participants=bob).first()
        if demo is None:
            demo, _ = services.conversation_create(
                creator=alice,
                participant_ids=[bob.pk],
                message_bodies=["Hi Bob, welcome to messaging_app!", "Reply to this over the API."],
            )
            self.stdout.write(f"created conversation {demo.conversation_id}")
        self.stdout.write(
            self.style.SUCCESS(
                "\nDemo data ready. Log in as alice@example.com, bob@example.com or carol@example.com "
                f"with password {DEMO_PASSWORD!r}:\n"
                f"  browser:  {server}/api-auth/login/  (then /api/)\n"
                f"  JWT:      curl -s -X POST {server}/api/token/ -H 'Content-Type: application/json' "
                f"-d '{{\"email\": \"alice@example.com\", \"password\": \"{DEMO_PASSWORD}\"}}'\n"
                f"  Basic:    curl -u alice@example.com:{DEMO_PASSWORD} {server}/api/conversations/\n"
                f"  demo conversation: {demo.conversation_id}"
            )
        )
