"""
The WebSocket endpoint `/ws/` (protocol in docs/websocket.md).

A socket authenticates with the browser session cookie (checked against the
Origin, against cross-site hijacking) or with {"type": "auth", "token": <access
JWT or personal access token>} as its first frame, takes one of its user's
WS_MAX_SOCKETS_PER_USER slots (chats/socket_slots.py), then registers with this process's live delivery
(chats/delivery.py) and receives every event of every conversation the user is
in (see chats/events.py), until the user's credentials are revoked
(events.credentials_revoked). Clients may send `typing`
(rate-limited, never stored), `ping`, and `resume` (replay what they missed).

A personal access token (bots/, recognised by its prefix) opens a socket when it has the `read`
scope; `typing`, the one frame that acts for the user, needs `send` too, as REST writes do. Its
slot counts against the cap but not as the user being connected (socket_slots.BOT_PREFIX): a
bot listening never shows its user online nor holds back their push notifications and digests.
Revoking the token closes the sockets it opened (its login id, bots.services.access_token_login_id).

Every event frame carries the `event_id` of the user's stream (chats/stream.py): numbered 1, 2,
3... with no gap. The socket keeps the last one it sent, so it sends none twice and, when a live
event arrives with a gap before it (a delivery the channel layer lost, or one still on its way
from another process), sends the missing ones from the stream first: the client sees every
event once, in order. `resume` starts that from the client's own cursor.
"""
import asyncio
import logging
import time
from collections import deque
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain
from redis.exceptions import RedisError
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken

from bots.models import PersonalAccessToken
from bots.services import TOKEN_PREFIX, access_token_login_id, access_token_use
from chats import delivery, presence, socket_slots, stream
from chats.events import as_plain_json
from chats.models import ConversationMembership, User
from chats.serializers import UserSummarySerializer
from chats.services import LOGIN_ID_CLAIM, session_login_id
from messaging_app import metrics, parsers

# Close codes (documented in docs/websocket.md).
CLOSE_BAD_FRAME = 4400  # not JSON, or not an object with a "type", before authenticating
CLOSE_UNAUTHORIZED = 4401  # missing, invalid or expired credentials, or none in time; or revoked since
CLOSE_FORBIDDEN = 4403  # a personal access token without the read scope
CLOSE_TOO_MANY_SOCKETS = 4409  # the user already has WS_MAX_SOCKETS_PER_USER sockets open
CLOSE_RATE_LIMITED = 4429  # kept sending typing frames far faster than allowed
CLOSE_TOO_SLOW = 4408  # stopped reading: events waited too long, or too many; resume on a new socket
CLOSE_TRY_AGAIN_LATER = 1013  # the socket's slot could not be taken: Redis unreachable (failing over, restarting)

logger = logging.getLogger(__name__)
TYPING_INTERVAL = 3.0  # seconds between typing events per conversation per socket
# Dropped typing frames (too early, or for a conversation that is not yours) tolerated
# within TYPING_FLOOD_WINDOW seconds before the socket is closed with 4429.
TYPING_DROPS_BEFORE_CLOSE = 50
TYPING_FLOOD_WINDOW = 10.0
# Seconds after auth.ok during which live events wait for the client's first frame: a client
# that resumes sends it at once, and its replay then comes before any live event (no event
# sent live first and again by the replay, out of order).
RESUME_GRACE_SECONDS = 1.0
# People one socket may follow the presence of (presence.subscribe).
PRESENCE_SUBSCRIPTIONS = 100
# Events read from the stream per query when catching up.
CATCH_UP_BATCH = 100


class ChatConsumer(AsyncJsonWebsocketConsumer):
    user: User | None = None

    async def connect(self):
        self.user = None
        self.user_hex = ""
        # Names this socket's slot (socket_slots) across processes.
        self.socket_id = uuid4().hex
        self.loop = asyncio.get_running_loop()
        # The login this socket authenticated with: its JWT's login_id claim, or its browser session.
        self.login_id: str | None = None
        # A personal access token's scopes; None for the user's own login (JWT or session): no limit.
        self.scopes: frozenset[str] | None = None
        self.typing_sent: dict[UUID, float] = {}
        self.typing_drops: deque[float] = deque()
        self.auth_deadline = self.keep_alive = self.pump = None
        # The event_id of the last event this socket sent (or the stream's position when it
        # authenticated): the next one it sends is position + 1.
        self.position = 0
        # What live delivery handed this socket (delivery.push), sent in order by self.pump;
        # `sending` serialises that with resume, so self.position never changes under a send.
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.sending = asyncio.Lock()
        self.too_slow = False
        # Read per socket, not per frame: a frame to 1,000 sockets is sent 1,000 times.
        self.send_timeout = settings.WS_SEND_TIMEOUT
        self.max_pending = settings.WS_MAX_PENDING_EVENTS
        await self.accept()
        session_user = self.scope.get("user")
        if session_user is not None and session_user.is_authenticated and self._origin_allowed():
            # Its login is the browser session: logging out of it closes this socket.
            await self._authenticated(session_user, session_login_id(self.scope["session"].session_key))
        else:
            self.auth_deadline = asyncio.create_task(self._close_if_not_authenticated())

    async def disconnect(self, code):
        for task in (self.auth_deadline, self.keep_alive, self.pump):
            if task is not None:
                task.cancel()
        if self.user is not None:
            delivery.unregister(self)
            try:
                await socket_slots.release(self.user.pk, self.socket_id)
            except RedisError:  # Redis unreachable: the slot lapses by itself (SLOT_TTL_SECONDS)
                logger.warning("Could not release a socket slot of user %s", self.user_hex, exc_info=True)
            if self.scopes is None:
                presence.socket_closed(self.user.pk)

    async def _close_if_not_authenticated(self):
        await asyncio.sleep(settings.WS_AUTH_TIMEOUT)
        if self.user is None:
            await self.close(code=CLOSE_UNAUTHORIZED)

    def _origin_allowed(self) -> bool:
        """
        Cookie auth only from our own pages (or non-browser clients, which send no Origin):
        the whole origin (scheme, host, port) must be the one this socket was opened on, as
        Django's CSRF check requires of HTTP writes, or one of CSRF_TRUSTED_ORIGINS or
        CORS_ALLOWED_ORIGINS.
        """
        headers = dict(self.scope.get("headers", []))
        origin = headers.get(b"origin")
        if origin is None:
            return True
        origin = origin.decode("latin1").lower()
        if origin in settings.CORS_ALLOWED_ORIGINS or origin in settings.CSRF_TRUSTED_ORIGINS:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.username is not None or parts.password is not None or parts.path or not parts.hostname:
            return False
        own = self._own_origin(headers)
        if own is not None and origin == own:
            return True
        # Django's wildcard trusted origins: "https://*.example.com" trusts example.com and its subdomains.
        return any(
            parts.scheme == trusted.split("://", 1)[0] and is_same_domain(parts.netloc, urlsplit(trusted).netloc[1:])
            for trusted in settings.CSRF_TRUSTED_ORIGINS
            if "://*." in trusted
        )

    def _own_origin(self, headers: dict[bytes, bytes]) -> str | None:
        """scheme://host[:port] this socket came to, if its Host is one we serve (ALLOWED_HOSTS)."""
        host = headers.get(b"host", b"").decode("latin1").lower()
        domain, _port = split_domain_port(host)
        if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
            return None
        secure = self.scope.get("scheme") in ("wss", "https")
        if settings.SECURE_PROXY_SSL_HEADER:  # as Django's request.is_secure(): the proxy's word first
            header, secure_value = settings.SECURE_PROXY_SSL_HEADER
            forwarded = headers.get(header.removeprefix("HTTP_").replace("_", "-").lower().encode())
            if forwarded is not None:
                secure = forwarded.decode("latin1").split(",", 1)[0].strip() == secure_value
        return f"{'https' if secure else 'http'}://{host}"

    async def _authenticated(self, user: User, login_id: str | None = None):
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        if self.scopes is not None:  # a bot's: counted, but the user is not "connected" by it
            self.socket_id = socket_slots.BOT_PREFIX + self.socket_id
        try:
            claimed = await socket_slots.claim(user.pk, self.socket_id)
        except RedisError:  # a Redis outage is the server's, not the client's: it may retry shortly
            logger.warning("Could not claim a socket slot of user %s: Redis unreachable", user.pk.hex, exc_info=True)
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        if not claimed:
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)
            return
        self.user, self.user_hex, self.login_id = user, user.pk.hex, login_id
        # Registered first, then the position: an event committed in between comes live, or
        # is before the position (and in whatever state the client loads next).
        delivery.register(self)
        self.position = await database_sync_to_async(stream.position)(user.pk)
        self.keep_alive = asyncio.create_task(self._keep_alive())
        self.started = asyncio.Event()
        self.loop.call_later(RESUME_GRACE_SECONDS, self.started.set)
        self.pump = asyncio.create_task(self._pump())
        await self.send_json({"type": "auth.ok", "user_id": str(user.pk), "last_event_id": self.position})
        if self.scopes is None:
            await presence.socket_opened(user.pk)

    async def _keep_alive(self):
        """
        Renews the socket's slot, so it does not lapse, and asks for a stream check, so an event
        the live path lost is sent within RENEW_SECONDS even when no later event comes to reveal
        the gap.
        """
        while True:
            await asyncio.sleep(socket_slots.RENEW_SECONDS)
            self.push(delivery.CHECK)
            await socket_slots.renew(self.user.pk, self.socket_id)

    # --- what live delivery hands this socket (chats/delivery.py) --------------------------
    def push(self, item) -> None:
        """On this socket's loop: queue a live item; a socket that lets them pile up is closed."""
        if self.too_slow:
            metrics.WS_EVENTS_DROPPED.inc()
            return
        if self.inbox.qsize() >= self.max_pending:
            metrics.WS_EVENTS_DROPPED.inc()
            self._stopped_reading(f"{self.inbox.qsize()} events waiting")
            return
        self.inbox.put_nowait(item)

    async def _pump(self):
        await self.started.wait()
        while True:
            item = await self.inbox.get()
            async with self.sending:
                if item is delivery.CHECK:
                    if await database_sync_to_async(stream.position)(self.user.pk) > self.position:
                        await self._catch_up()
                elif item[0] == "revoke":
                    await self._revoked(item[1])
                else:
                    await self._live_event(*item)

    @classmethod
    async def encode_json(cls, content) -> str:
        """orjson, as the live layer's messages: a frame to 1,000 sockets is encoded 1,000 times."""
        return orjson.dumps(content).decode()

    async def send_json(self, content, close=False):
        """Every frame: a client that does not take one within WS_SEND_TIMEOUT seconds has stopped reading."""
        if self.too_slow:
            return
        try:
            async with asyncio.timeout(self.send_timeout):  # no task per frame, as wait_for makes
                await super().send_json(content, close)
        except TimeoutError:
            self._stopped_reading(f"a frame not taken in {self.send_timeout:g}s")

    def _stopped_reading(self, why: str) -> None:
        """Closed with 4408: the client resumes from its last event_id on a new socket."""
        self.too_slow = True
        delivery.unregister(self)
        delivery.count_dropped_socket()
        logger.warning("Closed a WebSocket of user %s that stopped reading (%s).", self.user_hex, why)
        asyncio.ensure_future(self.close(code=CLOSE_TOO_SLOW))

    # --- frames from the client ----------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        try:
            content = parsers.loads(text_data or bytes_data or "")  # bounded nesting
        except ValueError:
            content = None
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            if self.user is None:
                await self.close(code=CLOSE_BAD_FRAME)
            else:
                await self._error("bad_frame", 'Send a JSON object with a "type".')
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        kind = content["type"]
        if self.user is None:
            if kind != "auth":
                await self.close(code=CLOSE_UNAUTHORIZED)
                return
            user, login_id, personal = await self._credentials(content.get("token"))
            if user is None:
                await self.close(code=CLOSE_UNAUTHORIZED)
                return
            if personal is not None:
                self.scopes = frozenset(personal.scope_list)
                if PersonalAccessToken.Scope.READ not in self.scopes:
                    await self.close(code=CLOSE_FORBIDDEN)
                    return
            await self._authenticated(user, login_id)
            if self.user is not None and personal is not None and not await self._still_valid(personal):
                await self._revoked(None)
                return
            if self.user is not None and "since" in content:  # resumed with no window for a live event
                await self._resume(content["since"])
                self.started.set()
            return
        try:
            await self._client_frame(kind, content)
        finally:
            self.started.set()  # live events go out from now (after a replay, if this was `resume`)

    async def _client_frame(self, kind: str, content: dict):
        if kind == "typing":
            if self.scopes is not None and PersonalAccessToken.Scope.SEND not in self.scopes:
                await self._error("permission_denied", "This token may not type: that needs its send scope.")
                await self._typing_dropped(time.monotonic())
                return
            await self._typing(content.get("conversation_id"))
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "resume":
            await self._resume(content.get("since"))
        elif kind == "presence.subscribe":
            await self._presence_subscribe(content.get("user_ids"))
        elif kind == "auth":
            await self._error("already_authenticated", "This socket is already authenticated.")
        else:
            await self._error("unknown_type", f"Unknown frame type: {kind[:40]}.")

    async def _presence_subscribe(self, raw_ids):
        """From now on, presence changes of these people (replacing the last list); their presence now first."""
        try:
            if not isinstance(raw_ids, list) or len(raw_ids) > PRESENCE_SUBSCRIPTIONS:
                raise ValueError
            user_ids = list(dict.fromkeys(UUID(str(raw)) for raw in raw_ids))
        except ValueError:
            await self._error("invalid", f'"user_ids" must be a list of at most {PRESENCE_SUBSCRIPTIONS} user ids.')
            return
        async with self.sending:  # live changes queue behind the presence now: never older after newer
            delivery.watch(self, [user_id.hex for user_id in user_ids])
            now = await database_sync_to_async(presence.presence_for)(viewer=self.user, user_ids=user_ids)
            for shown in now:
                await self.send_json(shown)

    async def _error(self, code: str, detail: str):
        await self.send_json({"type": "error", "code": code, "detail": detail})

    @database_sync_to_async
    def _credentials(self, token) -> tuple[User | None, str | None, PersonalAccessToken | None]:
        """
        The token's active user, its login id (None for JWTs from before login ids) and, for a
        personal access token, the token (None for an access JWT: the user's own login).
        """
        if not isinstance(token, str) or not token:
            return None, None, None
        if token.startswith(TOKEN_PREFIX):
            personal = access_token_use(value=token)
            if personal is None:
                return None, None, None
            return personal.user, access_token_login_id(personal.pk), personal
        try:
            access = AccessToken(token)
            user_id = access[settings.SIMPLE_JWT["USER_ID_CLAIM"]]
        except (TokenError, KeyError):
            return None, None, None
        return User.objects.filter(pk=user_id, is_active=True).first(), access.get(LOGIN_ID_CLAIM), None

    @database_sync_to_async
    def _still_valid(self, personal: PersonalAccessToken) -> bool:
        """
        Looked up again once the socket receives revocations (delivery.register): a token revoked
        while it authenticated had its revocation published before the socket could hear it.
        """
        return PersonalAccessToken.objects.filter(pk=personal.pk, user__is_active=True).exists()

    async def _typing(self, raw_conversation_id):
        now = time.monotonic()
        try:
            conversation_id = UUID(str(raw_conversation_id))
        except ValueError:
            conversation_id = None
        last_sent = self.typing_sent.get(conversation_id, -TYPING_INTERVAL)
        if conversation_id is not None and now - last_sent < TYPING_INTERVAL:
            await self._typing_dropped(now)
            return
        others = await self._other_participants(conversation_id) if conversation_id else None
        if others is None:
            await self._error("not_found", "No conversation of yours has this id.")
            await self._typing_dropped(now)
            return
        self.typing_sent = {k: t for k, t in self.typing_sent.items() if now - t < TYPING_INTERVAL}
        self.typing_sent[conversation_id] = now
        payload = {
            "type": "typing",
            "conversation_id": str(conversation_id),
            "user": as_plain_json(UserSummarySerializer(self.user).data),
        }
        await delivery.apublish(delivery.batches([(payload, dict.fromkeys(others))]))

    async def _typing_dropped(self, now: float):
        self.typing_drops.append(now)
        while self.typing_drops and now - self.typing_drops[0] > TYPING_FLOOD_WINDOW:
            self.typing_drops.popleft()
        if len(self.typing_drops) > TYPING_DROPS_BEFORE_CLOSE:
            await self.close(code=CLOSE_RATE_LIMITED)

    @database_sync_to_async
    def _other_participants(self, conversation_id):
        """The other participants, or None if the user is not in this conversation."""
        members = set(
            ConversationMembership.objects.filter(conversation_id=conversation_id).values_list("user_id", flat=True)
        )
        if self.user.pk not in members:
            return None
        return members - {self.user.pk}

    async def _resume(self, since):
        """Every event after `since`, in order, then live ones: no gap, no duplicate at the seam."""
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            await self._error("invalid", '"since" must be an event_id: an integer, 0 or more.')
            return
        async with self.sending:
            try:
                await database_sync_to_async(stream.check_cursor)(self.user.pk, since)
            except stream.CursorAhead as exc:
                await self._error("cursor_ahead", str(exc))
                return
            except stream.CursorExpired:
                await self._cursor_expired()
                return
            self.position = since
            await self._catch_up()
            await self.send_json({"type": "resumed", "last_event_id": self.position})

    async def _catch_up(self):
        """Send, from the stream, every event after self.position that has committed."""
        while True:
            try:
                frames = await database_sync_to_async(self._events_after)(self.position)
            except stream.CursorExpired:
                await self._cursor_expired()
                return
            for frame in frames:
                await self.send_json(frame)
                self.position = frame["event_id"]
            metrics.WS_EVENTS_SENT.inc(len(frames))
            if len(frames) < CATCH_UP_BATCH:
                return

    def _events_after(self, since: int) -> list[dict]:
        now_at = stream.check_cursor(self.user.pk, since)
        return stream.after(self.user.pk, since, CATCH_UP_BATCH, until=now_at)

    async def _cursor_expired(self):
        """The events after the cursor are gone: the client reloads over REST; live events go on from now."""
        self.position = await database_sync_to_async(stream.position)(self.user.pk)
        await self.send_json({
            "type": "error",
            "code": "cursor_expired",
            "detail": "The events after this cursor are no longer kept: reload your state over REST.",
            "last_event_id": self.position,
        })

    # Live items are sent by self.pump under self.sending, one at a time, so self.position
    # never changes under a handler's feet.
    async def _live_event(self, frame: dict, event_id: int | None):
        if event_id is None:  # ephemeral (typing): not part of the stream
            await self.send_json(frame)
            return
        if event_id <= self.position:  # sent already, by a catch-up
            return
        if event_id > self.position + 1:  # something before it is missing here: the stream has it
            await self._catch_up()
            if event_id <= self.position:
                return
        await self.send_json(frame)
        self.position = event_id
        metrics.WS_EVENTS_SENT.inc()

    async def _revoked(self, login_id: str | None):
        """Password changed, account deactivated or deleted (login_id None), or this login logged out."""
        if login_id is None or login_id == self.login_id:
            delivery.unregister(self)  # no event may follow the close
            await self.close(code=CLOSE_UNAUTHORIZED)
