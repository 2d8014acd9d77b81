"""
Drains the event outbox once (chats/outbox.py): numbers into the users' streams, and delivers,
the events of every conversation with a row queued more than --older-than seconds ago (default
0: every row). Each server process already sweeps rows older than EVENTS_OUTBOX_SWEEP_SECONDS;
this is for a deployment with every server stopped, or to check that nothing is left.

    python manage.py drain_events [--older-than SECONDS]
"""
from django.core.management.base import BaseCommand, CommandError

from chats import outbox


class Command(BaseCommand):
    help = "Number and deliver the events still queued in the event outbox."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", type=float, default=0.0, help="Only rows queued more than this many seconds ago."
        )

    def handle(self, *args, older_than=0.0, **options):
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more.")
        numbered = outbox.sweep(older_than=older_than, limit=100_000)
        self.stdout.write(f"Numbered {numbered} queued events.")
