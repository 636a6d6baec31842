"""The local stack's lifecycle: ``up``, ``down``, ``status``, ``logs``.

State lives in one folder (default ``.local/``)::

    credentials.json   mode 0600: Label Studio admin, legacy token, SECRET_KEY, PostgreSQL and
                       SAM2 basic-auth passwords (made once, reused by every ``up``)
    run/<service>.json PID record of each server ``up`` started (pid, start time, port, log)
    logs/<service>.log each server's output; logs/bootstrap.log the bootstrap's
    postgres/          PostgreSQL's data directory: projects and annotations survive ``down``
    label-studio/      Label Studio's data directory
    images/            the source images, synced into the S3 server by every ``up``
    spec/              the bootstrap spec used here (the shipped one, ML backend with basic auth)

``up`` checks everything it can before it starts anything (weights, binaries, stale PID
records, busy ports), starts only what is not running, and stops what it started when a later
step fails. ``down`` stops exactly the processes named by the PID records.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from local_stack import sam2, seed, services
from local_stack.procs import (
    LOOPBACK,
    PidRecord,
    StackError,
    http_check,
    port_in_use,
    record_for,
    stop_group,
    tail,
    wait_until,
    write_private,
)

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("postgres", "s3", "label-studio", "sam2-backend")  # start order
STOP_SIGNALS = {"postgres": services.PG_STOP_SIGNAL}
DEFAULT_PORTS = {"postgres": 5433, "s3": 9000, "label-studio": 8080, "sam2-backend": 9090}
PORT_OPTIONS = {"postgres": "--pg-port / LABELSTACK_PG_PORT",
                "s3": "--s3-port / LABELSTACK_S3_PORT",
                "label-studio": "--ls-port / LABELSTACK_LS_PORT",
                "sam2-backend": "--backend-port / LABELSTACK_BACKEND_PORT"}
ADMIN_EMAIL = "admin@labelstack.test"


@dataclass
class StackOptions:
    """What ``up`` was asked for."""

    state_dir: Path = Path(".local")
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    images_dir: Path | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    random_weights: bool = False
    pg_bindir: Path | None = None
    timeout: float = 300.0


class Layout:
    """Paths inside the state folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.run, self.logs = self.root / "run", self.root / "logs"
        self.credentials = self.root / "credentials.json"
        self.pg_data, self.ls_data = self.root / "postgres", self.root / "label-studio"
        self.spec_dir, self.stack_outputs = self.root / "spec", self.root / "stack-outputs.json"
        self.images, self.ls_work = self.root / "images", self.root / "label-studio-work"

    def pid_file(self, service: str) -> Path:
        return self.run / f"{service}.json"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def records(self) -> dict[str, PidRecord]:
        return {s: PidRecord.load(self.pid_file(s)) for s in SERVICES
                if self.pid_file(s).exists()}

    def create(self) -> None:
        if not self.root.exists():
            self.root.mkdir(parents=True)
            # PostgreSQL runs as the `postgres` user when we are root: it must enter this
            # folder (an existing folder keeps its mode; init_postgres says when it cannot)
            os.chmod(self.root, 0o711 if os.geteuid() == 0 else 0o700)
        # images and annotations count as PHI: only this user reads them
        for d in (self.run, self.logs, self.ls_data, self.ls_work, self.spec_dir, self.images):
            d.mkdir(mode=0o700, exist_ok=True)


def load_credentials(path: Path) -> dict:
    """The stack's secrets, made on first use and kept in a 0600 file."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return json.loads(path.read_text())
    creds = {
        "label_studio": {"username": ADMIN_EMAIL, "password": secrets.token_urlsafe(12),
                         "token": secrets.token_hex(20), "secret_key": secrets.token_urlsafe(48)},
        "postgres": {"user": "labelstack", "password": secrets.token_urlsafe(16),
                     "dbname": "labelstudio"},
        "sam2_backend": {"user": "labelstudio", "password": secrets.token_urlsafe(16)},
    }
    write_private(path, json.dumps(creds, indent=2) + "\n")
    return creds


# ------------------------------------------------------------------------------------ up
@dataclass
class UpResult:
    url: str
    username: str
    password: str
    projects: list[dict]
    started: list[str]
    reused: list[str]
    random_weights: bool


def preflight(opts: StackOptions, layout: Layout) -> tuple[dict[str, str], Path,
                                                            dict[str, PidRecord]]:
    """Everything checkable before starting anything: weights, binaries, PID records, ports.

    Returns the SAM2 weight settings, PostgreSQL's bin dir and the running services."""
    weights = sam2.weights_env(opts.checkpoint, random_weights=opts.random_weights,
                               checkpoint_sha256=opts.checkpoint_sha256)
    bindir = services.pg_bindir(opts.pg_bindir)
    if not (services.LS_BIN / "label-studio").exists():
        raise StackError(f"{services.LS_BIN / 'label-studio'} missing: run `make setup`",
                         exit_code=2, service="label-studio")
    running: dict[str, PidRecord] = {}
    for name, rec in layout.records().items():
        if not rec.alive():
            raise StackError(
                f"stale PID file {layout.pid_file(name)}: {name} (pid {rec.pid}) is no longer "
                "running (machine restarted or the process was killed). Run `labelstack local "
                "down` (or `make down`) to clear it, then `up` again", exit_code=2, service=name)
        running[name] = rec
    wanted = {s: p for s, p in opts.ports.items() if s not in running}
    if len(set(wanted.values())) != len(wanted):
        raise StackError(f"two services on one port: {wanted}; give each its own port",
                         exit_code=2)
    for name, port in wanted.items():
        if not 1 <= port <= 65535:
            raise StackError(f"port {port} for {name} is not a TCP port: set "
                             f"{PORT_OPTIONS[name]} to 1-65535", exit_code=2, service=name)
        if port_in_use(port):
            raise StackError(
                f"port {port} for {name} is already in use on {LOOPBACK}: stop what listens "
                f"there or choose another port with {PORT_OPTIONS[name]}", exit_code=2,
                service=name)
    return weights, bindir, running


class _Starter:
    """Starts services, records them, and stops what it started if a later step fails."""

    def __init__(self, layout: Layout, progress: Progress, timeout: float) -> None:
        self.layout, self.progress, self.timeout = layout, progress, timeout
        self.started: list[PidRecord] = []

    def launch(self, name: str, port: int, url: str,
               start: Callable[[], tuple[subprocess.Popen, Callable[[], str | None]]]
               ) -> Callable[[], None]:
        """Start one service and write its PID record; returns a wait-for-health callable."""
        proc, check = start()
        rec = record_for(name, proc, port=port, log=self.layout.log(name), url=url)
        self.started.append(rec)
        rec.save(self.layout.pid_file(name))
        return lambda: self.await_health(name, check, rec, proc)

    def await_health(self, name: str, check: Callable[[], str | None], rec: PidRecord,
                     proc: subprocess.Popen | None = None) -> None:
        task = self.progress.add_task(f"waiting for {name} on {rec.url}", total=None)
        t0 = time.monotonic()
        alive = (lambda: proc.poll() is None) if proc is not None else rec.alive
        try:
            wait_until(check, alive=alive, timeout=self.timeout, service=name,
                       log=Path(rec.log))
        finally:
            self.progress.remove_task(task)
        self.progress.console.print(
            f"[green]✓[/] {name} healthy on {rec.url} ({time.monotonic() - t0:.1f}s)")

    def rollback(self) -> None:
        for rec in reversed(self.started):
            stop_group(rec.pid, sig=STOP_SIGNALS.get(rec.name, signal.SIGTERM),
                       is_alive=rec.alive)
            self.layout.pid_file(rec.name).unlink(missing_ok=True)
            self.progress.console.print(f"[yellow]stopped[/] {rec.name} (pid {rec.pid})")


def _urls(ports: dict[str, int]) -> dict[str, str]:
    return {s: (f"postgresql://{LOOPBACK}:{p}" if s == "postgres" else f"http://{LOOPBACK}:{p}")
            for s, p in ports.items()}


def write_spec(layout: Layout) -> Path:
    """The shipped bootstrap spec, with the ML backend using the stack's basic auth."""
    import yaml

    raw = yaml.safe_load((REPO / "bootstrap" / "projects.yaml").read_text())
    for project in raw["projects"]:
        ml = project.get("ml_backend")
        if ml:
            ml.update({"auth": "basic", "basic_auth_user_env": "SAM2_BASIC_AUTH_USER",
                       "basic_auth_password_env": "SAM2_BASIC_AUTH_PASS"})
    for sub in ("instructions", "ontology"):
        if (REPO / "bootstrap" / sub).is_dir():
            shutil.copytree(REPO / "bootstrap" / sub, layout.spec_dir / sub, dirs_exist_ok=True)
    spec = layout.spec_dir / "projects.yaml"
    write_private(spec, "# written by `labelstack local up` from bootstrap/projects.yaml\n"
                  + yaml.safe_dump(raw, sort_keys=False))
    write_private(layout.stack_outputs, json.dumps({"bucketNames": seed.BUCKETS}) + "\n")
    return spec


def run_bootstrap(layout: Layout, *, ls_url: str, token: str, backend_url: str,
                  backend_auth: dict, s3: services.S3Server) -> None:
    """``python -m bootstrap apply --sync`` against the local Label Studio (log to a file)."""
    spec = write_spec(layout)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LABEL_STUDIO_", "AWS_", "SAM2_"))}
    env.update(s3.env())
    env.update({"LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": token,
                "SAM2_BACKEND_URL": backend_url,
                "SAM2_BASIC_AUTH_USER": backend_auth["user"],
                "SAM2_BASIC_AUTH_PASS": backend_auth["password"],
                "COLUMNS": "160", "NO_COLOR": "1"})
    log = layout.log("bootstrap")
    with log.open("ab") as fh:
        r = subprocess.run([sys.executable, "-m", "bootstrap", "apply", "--sync", "--spec",
                            str(spec), "--stack-outputs", str(layout.stack_outputs)],
                           cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise StackError(f"the bootstrap failed (exit {r.returncode}); log {log}:\n{tail(log)}",
                         service="bootstrap", log=log)


def list_projects(url: str, token: str) -> list[dict]:
    """Projects with their task counts and ML backends, as Label Studio reports them."""
    import httpx

    with httpx.Client(base_url=url, timeout=30,
                      headers={"Authorization": f"Token {token}"}) as c:
        projects = c.get("/api/projects/", params={"page_size": 100}).raise_for_status().json()
        out = []
        for p in projects["results"]:
            mls = c.get("/api/ml/", params={"project": p["id"]}).raise_for_status().json()
            out.append({"id": p["id"], "title": p["title"], "tasks": p.get("task_number"),
                        "annotations": p.get("total_annotations_number"),
                        "ml_backends": [{"id": m["id"], "url": m["url"], "state": m["state"]}
                                        for m in mls]})
    return out


def up(opts: StackOptions, console: Console) -> UpResult:
    """Start what is not running, sync the images, bootstrap the projects."""
    layout = Layout(opts.state_dir)
    weights, bindir, running = preflight(opts, layout)
    layout.create()
    creds = load_credentials(layout.credentials)
    ports = {**opts.ports, **{s: r.port for s, r in running.items()}}
    urls = _urls(ports)
    lsc, pgc = creds["label_studio"], creds["postgres"]
    pg = services.Postgres(LOOPBACK, ports["postgres"], pgc["user"], pgc["password"],
                           pgc["dbname"], layout.pg_data, layout.log("postgres"))
    s3 = services.S3Server(endpoint_url=urls["s3"], log_path=layout.log("s3"))
    images = opts.images_dir or layout.images
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        starter = _Starter(layout, progress, opts.timeout)
        try:
            _bring_up(starter, running, layout, bindir, pg, s3, urls, ports, creds, weights,
                      images, progress)
        except BaseException:
            starter.rollback()
            raise
    projects = list_projects(urls["label-studio"], lsc["token"])
    return UpResult(urls["label-studio"], lsc["username"], lsc["password"], projects,
                    [r.name for r in starter.started], sorted(running),
                    "SAM2_ALLOW_RANDOM_WEIGHTS" in weights)


def _bring_up(starter: _Starter, running: dict[str, PidRecord], layout: Layout, bindir: Path,
              pg: services.Postgres, s3: services.S3Server, urls: dict[str, str],
              ports: dict[str, int], creds: dict, weights: dict[str, str], images: Path,
              progress: Progress) -> None:
    say = progress.console.print
    lsc, authc = creds["label_studio"], creds["sam2_backend"]
    waits: dict[str, Callable[[], None]] = {}

    def reuse(name: str, check: Callable[[], str | None]) -> None:
        say(f"[cyan]•[/] {name} already running (pid {running[name].pid})")
        waits[name] = lambda: starter.await_health(name, check, running[name])

    # PostgreSQL and S3 first (Label Studio needs the database, the sync needs S3)
    if "postgres" in running:
        reuse("postgres", lambda: None)
    else:
        task = progress.add_task("initialising PostgreSQL", total=None)
        if services.init_postgres(bindir, layout.pg_data, user=pg.user, password=pg.password):
            say(f"[green]✓[/] PostgreSQL data directory created in {layout.pg_data}")
        progress.remove_task(task)
        waits["postgres"] = starter.launch("postgres", pg.port, urls["postgres"], lambda: (
            services.start_postgres(bindir, layout.pg_data, pg.port, layout.log("postgres"))))
    if "s3" in running:
        reuse("s3", _http_ok(urls["s3"] + "/moto-api/"))
    else:
        waits["s3"] = starter.launch("s3", ports["s3"], urls["s3"], lambda: (
            services.start_s3_server(ports["s3"], layout.log("s3"), layout.run)))
    waits.pop("postgres")()
    services.ensure_database(bindir, pg)
    waits.pop("s3")()

    task = progress.add_task("syncing images into S3", total=None)
    made = seed.generate_samples(images)
    if made:
        say(f"[green]✓[/] {len(made)} sample images generated in {images}")
    report = seed.sync_images(s3.client(), images, on_file=lambda key: progress.update(
        task, description=f"syncing images into S3: {key}"))
    progress.remove_task(task)
    say(f"[green]✓[/] {report.uploaded} images synced from {images} "
        f"({report.seg_tasks} SAM2 tasks, {report.derm_patients} patients)")

    # Label Studio and the backend start together (the slow parts), then both are awaited
    ls_url, backend_url = urls["label-studio"], urls["sam2-backend"]
    if "label-studio" in running:
        reuse("label-studio", _http_ok(ls_url + "/health"))
    else:
        env = services.label_studio_env(
            pg, s3, url=ls_url, username=lsc["username"], password=lsc["password"],
            token=lsc["token"], data_dir=layout.ls_data, secret_key=lsc["secret_key"],
            ml_backend_cidrs=["127.0.0.0/8"])
        waits["label-studio"] = starter.launch("label-studio", ports["label-studio"], ls_url,
                                               lambda: services.start_label_studio(
                                                   ports["label-studio"], env,
                                                   layout.log("label-studio"),
                                                   layout.ls_work))
    if "sam2-backend" in running:
        reuse("sam2-backend", _http_ok(backend_url + "/health"))
    else:
        env = sam2.backend_env(weights=weights, label_studio_url=ls_url, api_key=lsc["token"],
                               auth_user=authc["user"], auth_password=authc["password"])
        waits["sam2-backend"] = starter.launch(
            "sam2-backend", ports["sam2-backend"], backend_url,
            lambda: sam2.start_backend(ports["sam2-backend"], env, layout.log("sam2-backend")))
    waits.pop("label-studio")()
    waits.pop("sam2-backend")()

    task = progress.add_task("bootstrapping the projects (log: "
                             f"{layout.log('bootstrap')})", total=None)
    run_bootstrap(layout, ls_url=ls_url, token=lsc["token"], backend_url=backend_url,
                  backend_auth=authc, s3=s3)
    progress.remove_task(task)
    say("[green]✓[/] projects bootstrapped")


def _http_ok(url: str) -> Callable[[], str | None]:
    return http_check(url, ok=lambda s: s == 200)


# ---------------------------------------------------------------------- down, status, logs
def down(state_dir: Path, console: Console) -> list[str]:
    """Stop the processes named by the PID records (newest service first); clear stale ones."""
    layout = Layout(state_dir)
    stopped = []
    for name in reversed(SERVICES):
        path = layout.pid_file(name)
        if not path.exists():
            continue
        rec = PidRecord.load(path)
        if rec.alive():
            stop_group(rec.pid, sig=STOP_SIGNALS.get(name, signal.SIGTERM), is_alive=rec.alive)
            console.print(f"[green]✓[/] stopped {name} (pid {rec.pid})")
            stopped.append(name)
        else:
            console.print(f"[yellow]•[/] {name}: stale PID file removed (pid {rec.pid} was "
                          "not running)")
        path.unlink(missing_ok=True)
    if not stopped:
        console.print("nothing was running")
    return stopped


HEALTH_PATHS = {"s3": "/moto-api/", "label-studio": "/health", "sam2-backend": "/health"}


@dataclass
class ServiceStatus:
    name: str
    state: str  # running, stale, stopped
    pid: int | None
    url: str | None
    log: Path
    healthy: bool = False


def answers(rec: PidRecord) -> bool:
    """The service answers on its port: HTTP 200 on its health path, or a TCP connect."""
    import socket

    import httpx

    if rec.name not in HEALTH_PATHS:
        try:
            socket.create_connection((LOOPBACK, rec.port), timeout=3).close()
        except OSError:
            return False
        return True
    try:
        return httpx.get(rec.url + HEALTH_PATHS[rec.name], timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def status(state_dir: Path) -> list[ServiceStatus]:
    """Each service: running (its very process is alive), stale (PID record, no process)
    or stopped."""
    layout = Layout(state_dir)
    out = []
    for name in SERVICES:
        path = layout.pid_file(name)
        if not path.exists():
            out.append(ServiceStatus(name, "stopped", None, None, layout.log(name)))
            continue
        rec = PidRecord.load(path)
        alive = rec.alive()
        out.append(ServiceStatus(name, "running" if alive else "stale", rec.pid, rec.url,
                                 layout.log(name), alive and answers(rec)))
    return out


def status_table(rows: list[ServiceStatus]) -> Table:
    t = Table(title="labelstack local")
    for c in ("service", "state", "health", "pid", "address", "log"):
        t.add_column(c)
    colors = {"running": "green", "stale": "yellow", "stopped": "dim"}
    for r in rows:
        health = ("[green]answers[/]" if r.healthy else
                  "[red]not answering[/]" if r.state == "running" else "-")
        t.add_row(r.name, f"[{colors[r.state]}]{r.state}[/]", health, str(r.pid or "-"),
                  r.url or "-", str(r.log))
    return t


def log_paths(state_dir: Path, service: str | None) -> list[Path]:
    layout = Layout(state_dir)
    names = [service] if service else [*SERVICES, "bootstrap"]
    return [layout.log(n) for n in names]

