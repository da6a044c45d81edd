"""Fixtures for the whole suite."""

import fcntl

import pytest


def _held(tmp_path_factory, how: int):
    """A lock shared by the test workers of one session (their temporary folders' parent), held for a module."""
    path = tmp_path_factory.getbasetemp().parent / "machine.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, how)
        yield


@pytest.fixture(scope="module")
def timing_sensitive(tmp_path_factory):
    """A module whose runs race the clock (the chaos suite's markets at 20x): no other module that loads the
    machine runs beside it on the other worker, so what it measures is the bot, not the neighbour."""
    yield from _held(tmp_path_factory, fcntl.LOCK_EX)


@pytest.fixture(scope="module")
def machine_heavy(tmp_path_factory):
    """A module that loads the machine (several bots, processes or a browser at once): it may run beside
    another such module, never beside a timing-sensitive one."""
    yield from _held(tmp_path_factory, fcntl.LOCK_SH)
