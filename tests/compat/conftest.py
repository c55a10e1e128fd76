"""Fixtures of the scitq v1 compatibility tests: S3 (moto) named by the environment, as a
v1 user's scripts find it."""

from __future__ import annotations

import pytest

from tests.fixtures.servers import S3Server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The moto server, configured through ``SCITQ_S3_*`` for this test's process."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SCITQ_TRANSFER_RETRIES", "1")
    monkeypatch.setenv("SCITQ_TRANSFER_BACKOFF_BASE_SECONDS", "0.05")
    return s3_server
