"""Launchers for the stack's servers on 127.0.0.1: PostgreSQL, moto (S3), Label Studio.

Each ``start_*`` function starts one server process (own process group, output to a log file)
and returns it with a health check; ``run_*`` context managers wrap them for throwaway servers
in temporary directories (the end-to-end tests and benchmarks), and :mod:`local_stack.stack`
uses the same functions for the persistent local stack under ``.local/``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from local_stack.procs import (
    LOOPBACK,
    StackError,
    free_port,
    http_check,
    spawn,
    stop_process,
    tail,
    wait_until,
)

REPO = Path(__file__).resolve().parent.parent
MAIN_BIN = Path(sys.executable).parent
LS_BIN = REPO / ".venvs" / "label-studio" / "bin"
PG_STOP_SIGNAL = signal.SIGINT  # PostgreSQL's "fast" shutdown


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
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"


def pg_bindir(override: Path | None = None) -> Path:
    """The directory holding initdb/postgres/pg_isready/createdb (newest installed)."""
    if override is not None:
        if not (override / "postgres").is_file() or not (override / "initdb").is_file():
            raise StackError(
                f"PostgreSQL binaries (postgres, initdb) not found in --pg-bindir {override}: "
                "point it at e.g. /usr/lib/postgresql/15/bin or install PostgreSQL "
                "(`make system-packages`, i.e. apt-get install postgresql)", exit_code=2,
                service="postgres")
        return override
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    found = shutil.which("postgres")
    if not candidates and found:
        candidates = [Path(found).resolve()]
    if not candidates:
        raise StackError(
            "PostgreSQL server binaries (postgres, initdb) not found: install PostgreSQL "
            "(`make system-packages`, i.e. apt-get install postgresql) or pass --pg-bindir",
            exit_code=2, service="postgres")
    return candidates[-1].parent


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` system user when root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_env(password: str | None = None) -> dict[str, str]:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    env.pop("PGPASSWORD", None)
    if password is not None:
        env["PGPASSWORD"] = password
    return env


def _check_reachable_by_postgres(path: Path) -> None:
    """As root, the `postgres` user must be able to walk down to the data directory."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise StackError(
                f"the `postgres` system user cannot enter {parent} (PostgreSQL drops root "
                f"privileges): `chmod o+x {parent}` or use a --state-dir elsewhere",
                exit_code=2, service="postgres")


def init_postgres(bindir: Path, data_dir: Path, *, user: str, password: str) -> bool:
    """initdb ``data_dir`` unless it already holds a cluster; True when it created one."""
    if (data_dir / "PG_VERSION").exists():
        return False
    _check_reachable_by_postgres(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pwfile = data_dir.parent / f".pgpw-{secrets.token_hex(4)}"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    try:
        if os.geteuid() == 0:
            shutil.chown(data_dir, "postgres")
            shutil.chown(pwfile, "postgres")
        subprocess.run(_as_pg_user([
            str(bindir / "initdb"), "-D", str(data_dir), "-U", user, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        ]), check=True, capture_output=True, env=_pg_env())
    except subprocess.CalledProcessError as exc:
        raise StackError(f"initdb failed for {data_dir}: {exc.stderr.decode(errors='replace')}",
                         service="postgres") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    return True


def start_postgres(bindir: Path, data_dir: Path, port: int, log: Path
                   ) -> tuple[subprocess.Popen, Callable[[], str | None]]:
    """Run ``postgres`` on 127.0.0.1:port (no Unix socket); the process and a ready check."""
    proc = spawn(_as_pg_user([
        str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port),
        "-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories=",
        "-c", "fsync=off",
    ]), log=log, env=_pg_env())

    def ready() -> str | None:
        r = subprocess.run([str(bindir / "pg_isready"), "-h", LOOPBACK, "-p", str(port)],
                           capture_output=True, text=True)
        return None if r.returncode == 0 else (r.stdout.strip() or "not ready")

    return proc, ready


def ensure_database(bindir: Path, pg: Postgres) -> None:
    """createdb ``pg.dbname`` unless it exists."""
    r = subprocess.run([str(bindir / "createdb"), "-h", pg.host, "-p", str(pg.port),
                        "-U", pg.user, pg.dbname], capture_output=True, text=True,
                       env=_pg_env(pg.password))
    if r.returncode != 0 and "already exists" not in r.stderr:
        raise StackError(f"createdb {pg.dbname} failed: {r.stderr.strip()}", service="postgres",
                         log=pg.log_path)


@contextlib.contextmanager
def run_postgres(dbname: str = "labelstudio", timeout: float = 60) -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster in a temp dir on a free loopback port."""
    bindir = pg_bindir()
    root = Path(tempfile.mkdtemp(prefix="labelstack-pg-"))
    os.chmod(root, 0o711)
    pg = Postgres(LOOPBACK, free_port(), "labelstack", secrets.token_urlsafe(16), dbname,
                  root / "data", root / "postgres.log")
    proc = None
    try:
        init_postgres(bindir, pg.data_dir, user=pg.user, password=pg.password)
        proc, ready = start_postgres(bindir, pg.data_dir, pg.port, pg.log_path)
        wait_until(ready, alive=lambda: proc.poll() is None, timeout=timeout,
                   service="postgres", log=pg.log_path)
        ensure_database(bindir, pg)
        yield pg
    finally:
        if proc is not None:
            stop_process(proc, sig=PG_STOP_SIGNAL)
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


def start_s3_server(port: int, log: Path, workdir: Path
                    ) -> tuple[subprocess.Popen, Callable[[], str | None]]:
    """``moto_server`` on 127.0.0.1:port; the process and a health check."""
    exe = MAIN_BIN / "moto_server"
    if not exe.exists():
        raise StackError(f"{exe} missing: run `make setup`", exit_code=2, service="s3")
    proc = spawn([str(exe), "-H", LOOPBACK, "-p", str(port)], log=log, cwd=workdir)
    return proc, http_check(f"http://{LOOPBACK}:{port}/moto-api/")


@contextlib.contextmanager
def run_s3_server(timeout: float = 60) -> Iterator[S3Server]:
    """`moto_server` (S3-compatible) on a free loopback port."""
    root = Path(tempfile.mkdtemp(prefix="labelstack-moto-"))
    port, log = free_port(), root / "moto.log"
    proc, check = start_s3_server(port, log, root)
    try:
        wait_until(check, alive=lambda: proc.poll() is None, timeout=timeout, service="s3",
                   log=log)
        yield S3Server(endpoint_url=f"http://{LOOPBACK}:{port}", log_path=log)
    finally:
        stop_process(proc)
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
        import httpx

        if self._pat is None:
            headers = {"Authorization": f"Token {self.legacy_token}"}
            r = httpx.post(f"{self.url}/api/token/", headers=headers, timeout=30)
            r.raise_for_status()
            self._pat = r.json()["token"]
        return self._pat


def label_studio_env(pg: Postgres, s3: S3Server, *, url: str, username: str, password: str,
                     token: str, data_dir: Path, secret_key: str,
                     ml_backend_cidrs: Sequence[str] = (),
                     extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The cluster's hardening settings (``hardened_env``) plus where this one runs: the local
    PostgreSQL, moto as the operator's S3 endpoint, plain http on loopback, the first admin."""
    from infra.label_studio_settings import hardened_env

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "AWS_"))}
    env.update(hardened_env(host_url=url, secure_cookies=False,  # plain http on loopback
                            ml_backend_cidrs=ml_backend_cidrs,
                            allowed_hosts=[urlparse(url).hostname or LOOPBACK]))
    env.update({
        "DJANGO_DB": "default",
        "POSTGRE_NAME": pg.dbname, "POSTGRE_USER": pg.user, "POSTGRE_PASSWORD": pg.password,
        "POSTGRE_HOST": pg.host, "POSTGRE_PORT": str(pg.port),
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "SECRET_KEY": secret_key,
        # operator-trusted S3 endpoint (per-storage loopback endpoints are SSRF-blocked)
        "S3_ENDPOINT": s3.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": s3.region,
        "LABEL_STUDIO_USERNAME": username, "LABEL_STUDIO_PASSWORD": password,
        # the bootstrap and the backend authenticate with the admin's legacy token
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_USER_TOKEN": token,
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


def start_label_studio(port: int, env: dict[str, str], log: Path, workdir: Path
                       ) -> tuple[subprocess.Popen, Callable[[], str | None]]:
    """``label-studio start`` on 127.0.0.1:port; the process and a health check."""
    exe = LS_BIN / "label-studio"
    if not exe.exists():
        raise StackError(f"{exe} missing: run `make setup` (creates .venvs/label-studio)",
                         exit_code=2, service="label-studio")
    workdir.mkdir(parents=True, exist_ok=True)
    url = env["LABEL_STUDIO_HOST"]
    proc = spawn([str(exe), "start", "--no-browser", "--internal-host", LOOPBACK,
                  "-p", str(port), "--host", url], log=log, env=env, cwd=workdir)
    return proc, http_check(f"http://{LOOPBACK}:{port}/health", ok=lambda s: s == 200)


@contextlib.contextmanager
def run_label_studio(pg: Postgres, s3: S3Server, timeout: float = 240, *,
                     ml_backend_cidrs: Sequence[str] = (),
                     extra_env: Mapping[str, str] | None = None
                     ) -> Iterator[LabelStudioServer]:
    """`label-studio start` on a free loopback port, on `pg`, with `s3` as its S3 endpoint."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    root = Path(tempfile.mkdtemp(prefix="labelstack-ls-"))
    data_dir, log = root / "data", root / "label-studio.log"
    data_dir.mkdir()
    username, password = "admin@labelstack.test", secrets.token_urlsafe(16)
    token = secrets.token_hex(20)
    env = label_studio_env(pg, s3, url=url, username=username, password=password, token=token,
                           data_dir=data_dir, secret_key=secrets.token_urlsafe(48),
                           ml_backend_cidrs=ml_backend_cidrs, extra=extra_env)
    proc, check = start_label_studio(port, env, log, root / "work")
    try:
        wait_until(check, alive=lambda: proc.poll() is None, timeout=timeout,
                   service="label-studio", log=log)
        yield LabelStudioServer(url=url, username=username, password=password,
                                legacy_token=token, log_path=log, data_dir=data_dir)
    finally:
        stop_process(proc)
        if os.environ.get("LABELSTACK_KEEP_LOGS"):
            print(f"label-studio log kept at {log}:\n{tail(log, 5)}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
