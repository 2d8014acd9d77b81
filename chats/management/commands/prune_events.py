"""
Deletes the events older than the retention (EVENTS_RETENTION_DAYS, 7 by default) from every
user's stream. A cursor before what is kept is then answered 410 `cursor_expired` (REST) or an
error frame (the socket's resume), and the client reloads its state over REST. Run it daily
(cron, or the Kubernetes CronJob in prune_events_cronjob.yaml); it deletes in batches, each its own
transaction, so it never holds a long lock.

    python manage.py prune_events [--days N]
"""
from django.core.management.base import BaseCommand, CommandError

from chats import stream


class Command(BaseCommand):
    help = "Delete events older than EVENTS_RETENTION_DAYS (or --days) from the users' event streams."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="Keep this many days instead of EVENTS_RETENTION_DAYS.")

    def handle(self, *args, days=None, **options):
        if days is not None and days < 0:
            raise CommandError("--days must be 0 or more.")
        deleted = stream.prune(days=days)
        kept = stream.retention_days() if days is None else days
        self.stdout.write(f"Deleted {deleted} events older than {kept} days.")
