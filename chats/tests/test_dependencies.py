"""
constraints.txt locks every package the project installs, dependencies of dependencies
included (`make lock` regenerates it with pip-tools); the Makefile and the Dockerfile install
with it, so a fresh install gets exactly what CI tested.
"""
import re
from importlib import metadata
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line, following `-r other.txt`."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            found.update(pins(path.parent / line[3:].strip()))
        elif match := PIN.match(line):
            found[canonical(match.group(1))] = match.group(2)
    return found


def test_every_direct_pin_is_the_locked_version():
    locked = pins(ROOT / "constraints.txt")
    direct = {}
    for name in ("requirements.txt", "requirements-run.txt", "requirements-dev.txt"):
        direct.update(pins(ROOT / name))
    assert direct, "no pins found in the requirements files"
    differing = {name: (version, locked.get(name)) for name, version in direct.items() if locked.get(name) != version}
    assert not differing, f"requirements vs constraints.txt (run `make lock`): {differing}"


def test_the_environment_is_exactly_the_lock():
    """What this test run uses is what the lock says, dependencies of dependencies included."""
    locked = pins(ROOT / "constraints.txt")
    assert len(locked) > 50  # the whole tree, not only the direct pins
    installed = {canonical(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    differing = {
        name: (version, installed.get(name)) for name, version in locked.items() if installed.get(name) != version
    }
    assert not differing, f"locked vs installed (make install-dev): {differing}"
