"""
How the Redis clients are made (messaging_app/redis_clients.py): REDIS_URL alone gives the clients
the app always had; REDIS_SENTINELS makes them find the primary through Redis Sentinel (proved
for real, with a failover, in chats/tests/integration/test_redis_sentinel.py). And the background
tasks' metrics recorded where a task runs (messaging_app/celery.py).
"""
import pytest
from django.test import override_settings
from redis import BlockingConnectionPool, Redis
from rest_framework.test import APIClient

from chats.tests.factories import UserFactory
from messaging_app import metrics
from messaging_app.redis_clients import (
    BlockingSentinelPool,
    FailoverRetry,
    RedisConfig,
    parse_sentinels,
    sync_client,
)


def test_sentinels_are_host_port_pairs_and_anything_else_is_refused():
    assert parse_sentinels("") == []
    assert parse_sentinels("10.0.0.1:26379, sentinel-b:26380,") == [("10.0.0.1", 26379), ("sentinel-b", 26380)]
    assert parse_sentinels("[::1]:26379") == [("::1", 26379)]
    for bad in ("sentinel-a", "sentinel-a:", ":26379", "a:port", "a:0", "a:70000"):
        with pytest.raises(ValueError, match="REDIS_SENTINELS"):
            parse_sentinels(bad)


def test_with_redis_url_alone_the_clients_are_those_of_before():
    """One server, the URL's address and database, a pool that makes callers wait, no retries."""
    client = sync_client(max_connections=64, wait=10.0, config=RedisConfig("redis://127.0.0.1:6399/3"))
    pool = client.connection_pool
    assert type(pool) is BlockingConnectionPool
    assert (pool.max_connections, pool.timeout) == (64, 10.0)
    address = {k: pool.connection_kwargs[k] for k in ("host", "port", "db")}
    assert address == {"host": "127.0.0.1", "port": 6399, "db": 3}
    assert pool.make_connection().retry.get_retries() == 0
    assert type(sync_client(config=RedisConfig("redis://127.0.0.1:6399/3"))) is Redis


def test_with_sentinels_the_url_gives_only_the_database_password_and_tls():
    config = RedisConfig("rediss://:s3cret@ignored-host:1/4", (("s1", 26379), ("s2", 26379)), "chat", "sentinel-pw")
    client = sync_client(max_connections=8, wait=2.0, config=config)
    pool = client.connection_pool
    assert isinstance(pool, BlockingSentinelPool) and pool.service_name == "chat"
    options = pool.connection_kwargs
    assert (options["db"], options["password"], options["socket_timeout"]) == (4, "s3cret", 5.0)
    assert "host" not in options and pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    assert isinstance(pool.make_connection().retry, FailoverRetry)  # a failover is waited for, briefly
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["password"] == "sentinel-pw"


def test_settings_from_the_environment_and_the_celery_broker_through_sentinel():
    plain = RedisConfig.from_environ({"REDIS_URL": "redis://r:6379/0"})
    assert (plain.url, plain.sentinels, plain.celery_broker()) == ("redis://r:6379/0", (), ("redis://r:6379/0", {}))
    config = RedisConfig.from_environ({"REDIS_SENTINELS": "s1:26379,s2:26380", "REDIS_SENTINEL_MASTER": "chat"})
    assert config.url == "redis://chat/0"
    assert config.celery_broker() == (
        "sentinel://s1:26379/0;sentinel://s2:26380/0", {"master_name": "chat", "sentinel_kwargs": {"password": None}}
    )
    assert RedisConfig.from_environ({}).url == ""  # no Redis at all: everything in process


def test_a_task_run_is_counted_with_its_outcome_and_duration():
    """Where tasks run in-process (no broker), the web process records them as a worker does."""
    from notifications.tasks import ping

    def counted(outcome):
        return metrics.TASKS.labels("notifications.ping", outcome)._value.get()

    def timed():
        return next((s.value for s in metrics.TASK_DURATION.collect()[0].samples
                     if s.name.endswith("_count") and s.labels == {"task": "notifications.ping"}), 0.0)

    before = counted("succeeded"), counted("failed"), timed()
    assert ping.apply(args=["x"]).get() == "x"
    assert ping.apply(args=["x", "y"]).failed()  # a TypeError: the run fails
    assert (counted("succeeded"), counted("failed"), timed()) == (before[0] + 1, before[1] + 1, before[2] + 2)


DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.django_db
@override_settings(
    REDIS_URL=DEAD_REDIS,
    CACHES={"default": {"BACKEND": "messaging_app.cache.SharedPoolRedisCache", "LOCATION": DEAD_REDIS}},
)
def test_a_request_while_redis_is_unreachable_is_a_503_in_the_error_shape_never_a_500():
    """Its throttle counts in Redis: the client may retry (a Sentinel failover takes seconds)."""
    client = APIClient()
    client.force_authenticate(UserFactory())
    response = client.get("/api/conversations/")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert response.json()["type"] == "server_error"
    assert [error["code"] for error in response.json()["errors"]] == ["service_unavailable"]
