"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from tests.databases import Databases, server


def pytest_configure(config: pytest.Config) -> None:
    # `energy up` keeps keys in the checkout's .energy: the tests, and every process they
    # start, look in a data directory of their own, so a developer's keys never count.
    os.environ["ENERGY_DATA_DIR"] = tempfile.mkdtemp(prefix="energy-tests-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.pop("ENERGY_DATA_DIR", ""), ignore_errors=True)


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    with server() as conninfo:
        dbs = Databases(conninfo)
        try:
            yield dbs
        finally:
            dbs.drop_all()


@pytest.fixture(scope="session")
def database_url(databases: Databases) -> str:
    """One migrated database for the whole run; tests keep apart by using fresh device ids."""
    return databases.create()


@pytest.fixture
def fresh_database_url(databases: Databases) -> str:
    """A migrated database of this test's own, for tests that need an empty event log."""
    return databases.create()


def make_pool(conninfo: str, size: int = 8) -> ConnectionPool[Any]:
    return ConnectionPool(conninfo, min_size=1, max_size=size, open=True, timeout=10)


@pytest.fixture(scope="session")
def pool(database_url: str) -> Iterator[ConnectionPool[Any]]:
    with make_pool(database_url, size=16) as p:
        yield p


@pytest.fixture
def fresh_pool(fresh_database_url: str) -> Iterator[ConnectionPool[Any]]:
    with make_pool(fresh_database_url) as p:
        yield p
