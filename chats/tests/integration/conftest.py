"""
Server logs on failure, for the integration tests (the `integration` marker is in pytest.ini).

The tests in this package start real server processes (see test_two_servers.py); when one
fails, the logs of those servers are attached to its report.
"""
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and cluster is not None:
        for name, text in cluster.logs():
            report.sections.append((f"Captured log of {name}", text))
    return report
