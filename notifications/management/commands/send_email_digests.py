from django.core.management.base import BaseCommand

from notifications import digests


class Command(BaseCommand):
    help = "Send an email digest to each user who is due one (for cron, where no Celery beat runs)."

    def handle(self, *args, **options):
        sent = digests.email_digests_send()
        self.stdout.write(f"{sent} digest(s) sent.")
