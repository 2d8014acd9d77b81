#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messaging_app.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A configuration problem (e.g. production mode without DJANGO_SECRET_KEY) is for the
        # person at the terminal: one line and exit status 1, not a 40-line traceback.
        sys.exit(f"Error: {exc}")


if __name__ == "__main__":
    main()
