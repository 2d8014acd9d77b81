"""
Server logs on failure, for the integration tests (the `integration` marker is in pytest.ini).

The tests in this package start real server processes (see servers.py); when one fails,
the logs of those servers (of every fixture value with a `logs()` method) are attached to
its report.
"""
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if callable(getattr(value, "logs", None)):
                for name, text in value.logs():
                    report.sections.append((f"Captured log of {name}", text))
    return report
