"""
Throttle counters on a shared Redis reserve their numbers in blocks (chats.throttles): never more
than the limit let through, across processes, with one round trip per block instead of one per
request. On a private redis-server of the test's own (the production cache class).
"""
import pytest
from django.core.cache.backends.locmem import LocMemCache

from chats import throttles
from chats.tests.test_connection_reuse import private_redis  # noqa: F401 - the fixture
from messaging_app.cache import SharedPoolRedisCache


@pytest.fixture
def redis_server(private_redis):  # noqa: F811
    return private_redis


@pytest.fixture
def cache(redis_server):
    return SharedPoolRedisCache(f"redis://127.0.0.1:{redis_server.port}/0", {})


def increments(redis_server) -> int:
    stats = redis_server.client.info("commandstats")
    return stats.get("cmdstat_incrby", {}).get("calls", 0)


def test_numbers_are_unique_across_processes_and_cost_one_round_trip_per_block(cache, redis_server):
    processes = [throttles.WindowCounter() for _ in range(3)]
    numbers = [processes[i % 3].next(cache, "w:1", 60, 10) for i in range(300)]
    assert len(set(numbers)) == 300  # no number handed out twice
    assert max(numbers) <= 300 + 2 * 9  # at most the unused rest of the other processes' blocks
    assert increments(redis_server) == 30
    assert redis_server.client.ttl(cache.make_and_validate_key("w:1")) in range(55, 61)


def test_no_more_than_the_limit_is_let_through(cache):
    processes = [throttles.WindowCounter() for _ in range(2)]
    allowed = sum(processes[i % 2].next(cache, "w:2", 60, 7) <= 100 for i in range(500))
    assert 100 - 6 <= allowed <= 100


def test_blocks_of_one_count_every_request_on_the_cache(cache, redis_server):
    counter = throttles.WindowCounter()
    assert [counter.next(cache, "w:3", 60, 1) for _ in range(5)] == [1, 2, 3, 4, 5]
    assert increments(redis_server) == 5


def test_a_full_process_forgets_its_blocks_and_only_ever_refuses_earlier(cache, monkeypatch):
    monkeypatch.setattr(throttles, "MAX_LEASES", 2)
    counter = throttles.WindowCounter()
    first = [counter.next(cache, f"w:{n}", 60, 5) for n in ("a", "b", "c")]  # the third clears the others
    assert first == [1, 1, 1]
    assert counter.next(cache, "w:a", 60, 5) == 6  # a new block: numbers 2..5 of w:a go unused


class Rated(throttles.UserRateThrottle):
    rate = "1200/min"


@pytest.mark.parametrize("shared, block", [(True, 12), (False, 1)])
def test_block_size_follows_the_limit_and_the_cache(cache, shared, block):
    throttle = Rated()
    throttle.cache = cache if shared else LocMemCache("throttle-test", {})
    assert throttle.block == block


def test_small_limits_keep_blocks_of_one(cache):
    class Login(throttles.LoginRateThrottle):
        rate = "20/min"

    throttle = Login()
    throttle.cache = cache
    assert throttle.block == 1
