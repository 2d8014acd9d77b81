"""
`manage.py changepassword [email]`: Django's command, and then the user's logins end, as with
every other way of changing a password (services.user_password_save): refresh tokens
blacklisted, open sockets closed. Django's own command only saved the new hash.
"""
import getpass

from django.contrib.auth import get_user_model
from django.contrib.auth.management.commands import changepassword

from chats import services


class Command(changepassword.Command):
    def handle(self, *args, **options):
        message = super().handle(*args, **options)  # prompts, validates, saves, or raises CommandError
        User = get_user_model()
        username = options["username"] or getpass.getuser()
        user = User._default_manager.db_manager(options["database"]).get(**{User.USERNAME_FIELD: username})
        services.user_password_save(user=user)
        return message
