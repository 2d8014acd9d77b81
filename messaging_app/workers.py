"""The gunicorn worker of production (gunicorn.conf.py): uvicorn, with our WebSocket message bound."""
from uvicorn_worker import UvicornWorker

# Same value as settings.WS_MAX_MESSAGE_BYTES (this module is loaded before Django's settings);
# a test checks they agree.
WS_MAX_MESSAGE_BYTES = 65536


class BoundedUvicornWorker(UvicornWorker):
    """uvicorn accepts WebSocket messages up to 16 MiB by default; ours are a few hundred bytes: 1009 past 64 KiB."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "ws_max_size": WS_MAX_MESSAGE_BYTES}
