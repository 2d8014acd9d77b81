"""
Development only (settings add it, before daphne, when DJANGO_DEBUG=1 and daphne is
installed): `manage.py runserver` as daphne serves it, but failing fast when it cannot listen.
"""
