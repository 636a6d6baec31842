"""Real servers on loopback ports (PostgreSQL, S3-compatible moto, Label Studio) for the tests.

The launchers are the product's own (``local_stack.services``, also behind ``labelstack local
up``); this module only wraps them in session-scoped pytest fixtures (``postgres``,
``s3_server``, ``label_studio``) and re-exports the context managers (``run_postgres()``,
``run_s3_server()``, ``run_label_studio(pg, s3)``) that benchmarks and single tests use.
Logs go to files; a server that fails to come up raises with the log's tail.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import pytest

from local_stack.procs import free_port
from local_stack.services import (
    LabelStudioServer,
    Postgres,
    S3Server,
    run_postgres,
    run_s3_server,
)
from local_stack.services import run_label_studio as _run_label_studio

__all__ = ["LabelStudioServer", "Postgres", "S3Server", "free_port", "run_label_studio",
           "run_postgres", "run_s3_server"]

#: SSRF block-list settings a test may set in the process env to override the hardened list
SSRF_OVERRIDES = ("USE_DEFAULT_BANNED_SUBNETS", "USER_ADDITIONAL_BANNED_SUBNETS")


@contextlib.contextmanager
def run_label_studio(pg: Postgres, s3: S3Server, timeout: float = 240, *,
                     ml_backend_cidrs: Sequence[str] = ()) -> Iterator[LabelStudioServer]:
    """Label Studio with the hardened settings; by default nothing is taken off the SSRF block
    list (a loopback ML backend's training webhook is refused, as in the cluster for any
    address outside the service CIDR). A test may still set the block list in the env."""
    extra = {k: os.environ[k] for k in SSRF_OVERRIDES if k in os.environ}
    with _run_label_studio(pg, s3, timeout, ml_backend_cidrs=ml_backend_cidrs,
                           extra_env=extra) as ls:
        yield ls


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Throwaway PostgreSQL (session): host, port, user, password, dbname."""
    with run_postgres() as pg:
        yield pg


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto S3 server (session): endpoint_url, access_key, secret_key, region, client()."""
    with run_s3_server() as s3:
        yield s3


@pytest.fixture(scope="session")
def label_studio(postgres: Postgres, s3_server: S3Server) -> Iterator[LabelStudioServer]:
    """Label Studio 1.23.2 on PostgreSQL with the hardening env (session): url, legacy_token,
    personal_access_token(), username, password, log_path."""
    with run_label_studio(postgres, s3_server) as ls:
        yield ls
