"""
The read-replica router's decisions (messaging_app/db/replicas.py), on this process's cache and
connections: which alias a read goes to, read-your-writes across requests, and the fall-back when
no replica is usable. The replication itself is proven against real MariaDB/PostgreSQL replicas
in chats/tests/integration/test_read_replicas.py.
"""
import base64
import json
import uuid

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import RequestFactory

from chats.models import Message, User
from messaging_app.db import replicas

router = replicas.ReplicaRouter()


@pytest.fixture
def health(monkeypatch):
    """One replica, usable, and no checking thread (its state is set by the test)."""
    health = replicas.ReplicaHealth(["replica1"])
    health.states["replica1"] = replicas.ReplicaState(usable=True, lag_seconds=0.0)
    monkeypatch.setattr(health, "start", lambda: None)
    monkeypatch.setattr(replicas, "HEALTH", health)
    cache.clear()
    return health


def jwt_for(user_id: str) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part({'user_id': user_id, 'token_type': 'access'})}.signature"


def serve(method: str, token: str | None = None, write: bool = False) -> list[str]:
    """One request through the middleware; the aliases its reads were sent to."""
    reads = []

    def view(request):
        reads.append(router.db_for_read(Message))
        if write:
            router.db_for_write(Message)
            reads.append(router.db_for_read(Message))
        from django.http import HttpResponse

        return HttpResponse()

    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    request = getattr(RequestFactory(), method.lower())("/api/conversations/", **headers)
    replicas.ReplicaRoutingMiddleware(view)(request)
    return reads


def test_reads_of_a_safe_request_go_to_the_replica_and_writes_to_the_primary(health):
    assert serve("GET", jwt_for(str(uuid.uuid4()))) == ["replica1"]
    assert router.db_for_write(Message) == "default"


def test_a_request_that_writes_reads_the_primary_from_its_first_write_on(health):
    assert serve("GET", jwt_for(str(uuid.uuid4())), write=True) == ["replica1", "default"]
    assert serve("POST", jwt_for(str(uuid.uuid4()))) == ["default"]


def test_a_client_that_wrote_reads_the_primary_for_the_window_then_the_replica(health, settings):
    settings.READ_YOUR_WRITES_SECONDS = 1
    token, someone_else = jwt_for(str(uuid.uuid4())), jwt_for(str(uuid.uuid4()))
    serve("POST", token)
    assert serve("GET", token) == ["default"]  # send, then list: the message just sent is there
    assert serve("GET", someone_else) == ["replica1"]
    # The same user with another token (a refreshed one) too: keyed by the user id.
    user_id = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["user_id"]
    assert serve("GET", jwt_for(user_id)) == ["default"]
    cache.delete(replicas.WROTE_KEY.format(f"user:{user_id}"))  # the window ends
    assert serve("GET", token) == ["replica1"]


def test_without_a_usable_replica_reads_fall_back_to_the_primary(health):
    health.states["replica1"] = replicas.ReplicaState(usable=False, lag_seconds=30.0, error="lagging")
    assert serve("GET", jwt_for(str(uuid.uuid4()))) == ["default"]
    assert health.report() == {"replica1": {"usable": False, "lag_seconds": 30.0, "detail": "lagging"}}


def test_outside_a_request_everything_reads_the_primary(health):
    assert router.db_for_read(Message) == "default"  # WebSockets, Celery, management commands


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_reads_stay_on_the_primary(health):
    def view(request):
        with transaction.atomic():
            reads.append(router.db_for_read(User))
        reads.append(router.db_for_read(User))
        from django.http import HttpResponse

        return HttpResponse()

    reads = []
    replicas.ReplicaRoutingMiddleware(view)(RequestFactory().get("/api/conversations/"))
    assert reads == ["default", "replica1"]


def test_credentials_other_than_a_jwt_are_keyed_by_their_digest():
    request = RequestFactory().get("/", HTTP_AUTHORIZATION="Token abc")
    other = RequestFactory().get("/", HTTP_AUTHORIZATION="Token abd")
    assert replicas.client_key(request).startswith("credential:")
    assert replicas.client_key(request) != replicas.client_key(other)
    assert replicas.client_key(RequestFactory().get("/")) is None
    assert replicas.client_key(RequestFactory().get("/", HTTP_AUTHORIZATION="Bearer not.a-jwt")).startswith(
        "credential:")


@pytest.mark.django_db
def test_the_health_check_measures_a_reachable_database_and_marks_an_unreachable_one(settings):
    health = replicas.ReplicaHealth(["default"])  # SQLite: no replication, no lag
    health.check()
    assert health.report()["default"] == {"usable": True, "lag_seconds": 0.0, "detail": None}
    settings.REPLICA_MAX_LAG_SECONDS = -1  # every lag is too much
    health.check()
    assert health.usable() == [] and "lagging" in health.report()["default"]["detail"]


def test_migrations_run_on_the_primary_only():
    assert router.allow_migrate("default", "chats") is True
    assert router.allow_migrate("replica1", "chats") is False


@pytest.mark.django_db
def test_readyz_reports_a_replica_that_cannot_take_reads_and_stays_ready(health, settings, client):
    settings.DATABASE_REPLICAS = ["replica1"]
    health.states["replica1"] = replicas.ReplicaState(usable=False, error="connection refused")
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["replicas"] == {
        "replica1": {"usable": False, "lag_seconds": None, "detail": "connection refused"}}
