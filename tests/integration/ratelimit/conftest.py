"""A real `redis-server` per test (`testkit.redisserver`), plain or with a password."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.redisserver import RedisServer, running_redis

PASSWORD = "s3cret-for-tests"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path, password=PASSWORD) as server:
        yield server
