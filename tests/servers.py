"""Real servers on loopback ports (PostgreSQL, S3-compatible moto, Label Studio), started by
the tests and stopped after.

Each server is a plain context manager (``run_postgres()``, ``run_s3_server()``,
``run_label_studio(pg, s3)``) so benchmarks can reuse them, and a session-scoped pytest
fixture (``postgres``, ``s3_server``, ``label_studio``) wraps each one so it starts once per
test session. Logs go to files; a server that fails to come up raises with the log's tail.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
MAIN_BIN = Path(sys.executable).parent
LS_BIN = REPO / ".venvs" / "label-studio" / "bin"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


def _stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a process we started (its own process group) by id: TERM, then KILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; log {log}:\n{_tail(log)}")
        try:
            r = httpx.get(url, timeout=5)
            if r.status_code < 500:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.5)
    raise RuntimeError(f"{what} not up after {timeout:.0f}s ({last}); log {log}:\n{_tail(log)}")


# --------------------------------------------------------------------------- PostgreSQL
@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    dbname: str
    data_dir: Path
    log_path: Path

    @property
    def dsn(self) -> str:
        return (
            f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"
        )


def _pg_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    found = shutil.which("pg_ctl")
    if not candidates and found:
        candidates = [Path(found).resolve()]
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make system-packages` "
            "(apt-get install postgresql)"
        )
    return candidates[-1].parent


def _as_pg_user(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: drop to the `postgres` system user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def run_postgres(dbname: str = "labelstudio") -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster in a temp dir on a free loopback port."""
    bindir = _pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="labelstack-pg-"))
    data, sock, log = root / "data", root / "sock", root / "postgres.log"
    sock.mkdir()
    user, password, port = "labelstack", secrets.token_urlsafe(16), free_port()
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for p in (sock, pwfile):
            shutil.chown(p, "postgres")
    os.chmod(pwfile, 0o600)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        _as_pg_user([
            str(bindir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        ]),
        check=True, capture_output=True, env=env,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = False
    try:
        subprocess.run(
            _as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                         "-o", opts, "-w", "-t", "60", "start"]),
            check=True, capture_output=True, env=env,
        )
        started = True
        subprocess.run(
            _as_pg_user([str(bindir / "createdb"), "-h", str(sock), "-p", str(port),
                         "-U", user, dbname]),
            check=True, capture_output=True, env=env,
        )
        yield Postgres("127.0.0.1", port, user, password, dbname, data, log)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(
            f"PostgreSQL setup failed: {e.cmd}: {e.stderr!r}\n{_tail(log)}"
        ) from e
    finally:
        if started:
            subprocess.run(
                _as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                             "stop"]),
                capture_output=True, env=env,
            )
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- S3 (moto)
@dataclass
class S3Server:
    endpoint_url: str
    access_key: str = "testing"
    secret_key: str = "testing"  # moto accepts any credentials
    region: str = "us-east-1"
    log_path: Path | None = None

    def client(self):
        """A boto3 S3 client bound to this server."""
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
        )

    def env(self) -> dict[str, str]:
        """AWS_* env that points boto3 clients (ours or Label Studio's) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }


@contextlib.contextmanager
def run_s3_server() -> Iterator[S3Server]:
    """`moto_server` (S3-compatible) on a free loopback port."""
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="labelstack-moto-"))
    log = root / "moto.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(MAIN_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=root,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/moto-api/", proc, log, 60, "moto_server")
        yield S3Server(endpoint_url=url, log_path=log)
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- Label Studio
@dataclass
class LabelStudioServer:
    url: str
    username: str
    password: str
    legacy_token: str
    log_path: Path
    data_dir: Path
    _pat: str | None = field(default=None, repr=False)

    def personal_access_token(self) -> str:
        """The admin's personal access token (a JWT refresh token), created once and cached.

        Label Studio allows one live PAT per user, so every caller shares this one."""
        if self._pat is None:
            headers = {"Authorization": f"Token {self.legacy_token}"}
            r = httpx.post(f"{self.url}/api/token/", headers=headers, timeout=30)
            r.raise_for_status()
            self._pat = r.json()["token"]
        return self._pat


def label_studio_env(pg: Postgres, s3: S3Server, *, url: str, username: str, password: str,
                     token: str, data_dir: Path) -> dict[str, str]:
    """The hardening env of our Helm values, pointed at a local PostgreSQL and moto."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "AWS_"))}
    env.update({
        "DJANGO_DB": "default",
        "POSTGRE_NAME": pg.dbname, "POSTGRE_USER": pg.user, "POSTGRE_PASSWORD": pg.password,
        "POSTGRE_HOST": pg.host, "POSTGRE_PORT": str(pg.port),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_HOST": url,
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        "LOCAL_FILES_SERVING_ENABLED": "false",
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "false",
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "SESSION_COOKIE_SECURE": "0",  # plain http on loopback in tests; 1 in the Helm values
        "CSRF_TRUSTED_ORIGINS": url,
        "SSRF_PROTECTION_ENABLED": "true",
        # the test ML backend listens on loopback; in the cluster it is a 10.x ClusterIP
        "ML_BLOCK_LOCAL_IP": "false",
        # operator-trusted S3 endpoint (per-storage loopback endpoints are SSRF-blocked)
        "S3_ENDPOINT": s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": s3.region,
        "LABEL_STUDIO_USERNAME": username, "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_USER_TOKEN": token,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@contextlib.contextmanager
def run_label_studio(pg: Postgres, s3: S3Server, timeout: float = 240) -> Iterator[
        LabelStudioServer]:
    """`label-studio start` on a free loopback port, on `pg`, with `s3` as its S3 endpoint."""
    exe = LS_BIN / "label-studio"
    if not exe.exists():
        raise RuntimeError(f"{exe} missing: run `make setup` (creates .venvs/label-studio)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = Path(tempfile.mkdtemp(prefix="labelstack-ls-"))
    data_dir, work, log = root / "data", root / "work", root / "label-studio.log"
    data_dir.mkdir()
    work.mkdir()
    username, password = "admin@labelstack.test", secrets.token_urlsafe(16)
    token = secrets.token_hex(20)
    env = label_studio_env(pg, s3, url=url, username=username, password=password,
                           token=token, data_dir=data_dir)
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "-p", str(port), "--host", url],
            stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True,
        )
    try:
        _wait_http(f"{url}/health", proc, log, timeout, "label-studio")
        yield LabelStudioServer(url=url, username=username, password=password,
                                legacy_token=token, log_path=log, data_dir=data_dir)
    finally:
        _stop(proc)
        if os.environ.get("LABELSTACK_KEEP_LOGS"):
            print(f"label-studio log kept at {log}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- fixtures
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
