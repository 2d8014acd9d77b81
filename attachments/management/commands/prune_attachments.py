"""
Deletes uploads never sent with a message within ATTACHMENTS_UNATTACHED_TTL_HOURS (24 by
default), rows and files. Run it daily, like prune_events (the Kubernetes CronJob in
prune_events_cronjob.yaml runs both); in batches, each its own transaction.

    python manage.py prune_attachments [--hours N]
"""
from django.core.management.base import BaseCommand, CommandError

from attachments import services


class Command(BaseCommand):
    help = "Delete uploads not attached to any message within ATTACHMENTS_UNATTACHED_TTL_HOURS (or --hours)."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=int, help="Keep unsent uploads this many hours instead.")

    def handle(self, *args, hours=None, **options):
        if hours is not None and hours < 0:
            raise CommandError("--hours must be 0 or more.")
        deleted = services.attachments_prune(hours=hours)
        self.stdout.write(f"Deleted {deleted} unsent upload(s).")
