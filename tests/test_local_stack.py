"""`labelstack local up/down/status` end to end, as a user runs it (CLI subprocesses).

One `up` per module in a temporary state folder on free ports (PostgreSQL, moto, Label Studio,
the SAM2 backend with random weights), reused by the cases; the last cases take it `down` and
`up` again. The bad-input cases stop in the pre-flight checks and need no servers, except the
unloadable checkpoint, which fails after the other services started and must leave nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from local_stack.procs import PidRecord, free_port, process_start_time
from local_stack.stack import SERVICES

pytestmark = [pytest.mark.servers, pytest.mark.sam2]

REPO = Path(__file__).resolve().parent.parent
SEG_TITLE, DERM_TITLE = "SAM2 precision segmentation", "Dermatology lesion tracking"


def cli(*args: str, env: dict | None = None, timeout: float = 900
        ) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SAM2_", "LABELSTACK_", "LABEL_STUDIO_", "AWS_"))}
    base.update({"COLUMNS": "250", "NO_COLOR": "1", **(env or {})})
    return subprocess.run([sys.executable, "-m", "labelstack", "local", *args], cwd=REPO,
                          env=base, capture_output=True, text=True, timeout=timeout)


def said(r: subprocess.CompletedProcess) -> str:
    return " ".join((r.stdout + r.stderr).split())


def state_folder(prefix: str) -> Path:
    """A temp folder PostgreSQL's system user can enter when the tests run as root."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o711)
    return root


def listening_on(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a listening socket on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


#: 127.0.0.1 in /proc/net/tcp, and as an IPv4-mapped address in /proc/net/tcp6
LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F"}


@dataclass
class Stack:
    root: Path
    ports: dict[str, int]
    first: subprocess.CompletedProcess
    annotated_task: int | None = None
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def port_args(self) -> list[str]:
        p = self.ports
        return ["--ls-port", str(p["label-studio"]), "--backend-port", str(p["sam2-backend"]),
                "--s3-port", str(p["s3"]), "--pg-port", str(p["postgres"])]

    def up(self, *extra: str) -> subprocess.CompletedProcess:
        return cli("up", "--state-dir", str(self.state), *self.port_args(), *extra)

    def records(self) -> dict[str, PidRecord]:
        return {s: PidRecord.load(self.state / "run" / f"{s}.json") for s in SERVICES
                if (self.state / "run" / f"{s}.json").exists()}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['label-studio']}"

    def http(self) -> httpx.Client:
        token = json.loads((self.state / "credentials.json").read_text())["label_studio"]
        return httpx.Client(base_url=self.url, timeout=120,
                            headers={"Authorization": f"Token {token['token']}"})

    def project(self, title: str) -> dict:
        with self.http() as c:
            found = [p for p in c.get("/api/projects/").json()["results"]
                     if p["title"] == title]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module")
def stack() -> Stack:
    root = state_folder("labelstack-local-")
    ports = {s: free_port() for s in SERVICES}
    st = Stack(root, ports, None)  # type: ignore[arg-type]
    try:
        st.first = st.up("--random-weights")
        assert st.first.returncode == 0, said(st.first)
        st.pids = {s: r.pid for s, r in st.records().items()}
        yield st
    finally:
        r = cli("down", "--state-dir", str(st.state))
        assert r.returncode == 0, said(r)
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------ happy path
def test_up_starts_every_service_on_loopback_and_says_how_to_start(stack: Stack) -> None:
    recs = stack.records()
    assert sorted(recs) == sorted(SERVICES)
    for name, rec in recs.items():
        assert rec.alive(), name
        assert rec.port == stack.ports[name]
        addresses = listening_on(rec.port)
        assert addresses and addresses <= LOOPBACK_HEX, (name, addresses)  # loopback only
        assert os.getpgid(rec.pid) == rec.pid  # its own process group
    # the hardened settings hold here too: Label Studio answers only for its own host name
    assert httpx.get(f"{stack.url}/health").status_code == 200
    assert httpx.get(f"{stack.url}/health", headers={"Host": "evil.example"}).status_code == 400
    text = said(stack.first)
    assert stack.url in text and "admin@labelstack.test" in text
    assert "try first" in text and "MEANINGLESS" in text  # random weights: banner
    creds = stack.state / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(creds.read_text())["label_studio"]["password"] in text


def test_both_projects_with_their_tasks(stack: Stack) -> None:
    seg, derm = stack.project(SEG_TITLE), stack.project(DERM_TITLE)
    assert seg["task_number"] == 6  # 3 batches of 2 generated images
    assert derm["task_number"] == 3  # one task per patient
    with stack.http() as c:
        tasks = c.get("/api/tasks/", params={"project": derm["id"]}).json()["tasks"]
    assert all(len(t["data"]["images"]) == 3 for t in tasks)  # 3 visits each
    images = stack.state / "images"
    assert len(list((images / "sam2-segmentation").rglob("*.png"))) == 6
    assert len(list((images / "derm-lesion-tracking").rglob("*.png"))) == 9


def test_ml_backend_connected_with_basic_auth(stack: Stack) -> None:
    seg = stack.project(SEG_TITLE)
    with stack.http() as c:
        [ml] = c.get("/api/ml/", params={"project": seg["id"]}).json()
    assert ml["url"] == f"http://127.0.0.1:{stack.ports['sam2-backend']}"
    assert ml["state"] == "CO" and ml["is_interactive"] is True
    assert ml["auth_method"] == "BASIC_AUTH" and ml["basic_auth_pass_is_set"] is True
    assert ml["model_version"].endswith(":random")
    # the backend itself refuses callers without the stack's credentials
    r = httpx.post(f"{ml['url']}/predict", json={"tasks": []}, timeout=30)
    assert r.status_code == 401, r.text


def test_click_answered_through_label_studio(stack: Stack) -> None:
    from label_studio_sdk.converter.brush import decode_rle

    seg = stack.project(SEG_TITLE)
    with stack.http() as c:
        [ml] = c.get("/api/ml/", params={"project": seg["id"]}).json()
        task = c.get("/api/tasks/", params={"project": seg["id"]}).json()["tasks"][0]
        click = {"type": "keypointlabels", "from_name": "prompt_point", "to_name": "image",
                 "original_width": 640, "original_height": 480, "image_rotation": 0,
                 "is_positive": True, "origin": "manual",
                 "value": {"x": 40, "y": 45, "width": 0.6, "keypointlabels": ["Lesion"]}}
        r = c.post(f"/api/ml/{ml['id']}/interactive-annotating",
                   json={"task": task["id"], "context": {"result": [click]}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "errors" not in body, body
    (region,) = body["data"]["result"]
    assert region["type"] == "brushlabels" and region["value"]["brushlabels"] == ["Lesion"]
    assert (region["original_width"], region["original_height"]) == (640, 480)
    mask = np.reshape(decode_rle(region["value"]["rle"]), (480, 640, 4))[:, :, 3]
    assert set(np.unique(mask)) <= {0, 255}


def test_status_lists_running_services(stack: Stack) -> None:
    r = cli("status", "--state-dir", str(stack.state))
    assert r.returncode == 0, said(r)
    assert said(r).count("running") == len(SERVICES)
    assert said(r).count("answers") == len(SERVICES)


def test_up_again_is_idempotent(stack: Stack) -> None:
    r = stack.up("--random-weights")
    assert r.returncode == 0, said(r)
    assert said(r).count("already running") == len(SERVICES)
    assert {s: rec.pid for s, rec in stack.records().items()} == stack.pids
    assert stack.project(SEG_TITLE)["task_number"] == 6  # no task imported twice
    assert stack.project(DERM_TITLE)["task_number"] == 3


def test_logs_show_each_service(stack: Stack) -> None:
    r = cli("logs", "label-studio", "-n", "5", "--state-dir", str(stack.state))
    assert r.returncode == 0 and "label-studio.log" in r.stdout
    r = cli("logs", "nginx", "--state-dir", str(stack.state))
    assert r.returncode == 2 and "nginx" in said(r)


# ------------------------------------------------- down, a failed up, up: annotations survive
def test_down_stops_exactly_what_up_started(stack: Stack) -> None:
    seg = stack.project(SEG_TITLE)
    with stack.http() as c:
        task = c.get("/api/tasks/", params={"project": seg["id"]}).json()["tasks"][0]
        result = [{"from_name": "mask", "to_name": "image", "type": "brushlabels",
                   "original_width": 640, "original_height": 480, "image_rotation": 0,
                   "value": {"format": "rle", "rle": [0, 1, 2], "brushlabels": ["Ruler"]}}]
        r = c.post(f"/api/tasks/{task['id']}/annotations/", json={"result": result})
    assert r.status_code == 201, r.text
    stack.annotated_task = task["id"]
    recs = stack.records()
    r = cli("down", "--state-dir", str(stack.state))
    assert r.returncode == 0, said(r)
    for name, rec in recs.items():
        assert process_start_time(rec.pid) is None, f"{name} still running"
    assert stack.records() == {}
    assert (stack.state / "postgres" / "PG_VERSION").exists()  # data stays
    r = cli("status", "--state-dir", str(stack.state))
    assert r.returncode == 1 and said(r).count("stopped") == len(SERVICES)


def test_unloadable_checkpoint_fails_naming_the_backend_and_leaves_nothing(stack: Stack
                                                                         ) -> None:
    bogus = stack.root / "not-a-checkpoint.pt"
    bogus.write_bytes(b"this is not a torch checkpoint")
    r = stack.up("--checkpoint", str(bogus))
    assert r.returncode == 3, said(r)
    assert "sam2-backend" in said(r) and "sam2-backend.log" in said(r)
    assert stack.records() == {}
    for port in stack.ports.values():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_annotation_survives_down_then_up(stack: Stack) -> None:
    assert stack.annotated_task is not None, "needs test_down_stops_exactly_what_up_started"
    r = stack.up("--random-weights")
    assert r.returncode == 0, said(r)
    with stack.http() as c:
        anns = c.get(f"/api/tasks/{stack.annotated_task}/annotations/").json()
    assert [a["result"][0]["value"]["brushlabels"] for a in anns] == [["Ruler"]]
    assert stack.project(SEG_TITLE)["task_number"] == 6


# ------------------------------------------------------------------- bad input, no servers
@pytest.fixture
def fresh() -> Path:
    root = state_folder("labelstack-bad-")
    yield root / "state"
    shutil.rmtree(root, ignore_errors=True)


def _nothing_started(state: Path) -> None:
    run = state / "run"
    assert not run.exists() or not list(run.iterdir())


def test_busy_port_is_refused_before_anything_starts(fresh: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("up", "--state-dir", str(fresh), "--random-weights", "--ls-port", str(port),
                "--pg-port", str(free_port()), "--s3-port", str(free_port()),
                "--backend-port", str(free_port()))
    assert r.returncode == 2, said(r)
    assert f"port {port} for label-studio is already in use" in said(r)
    assert "--ls-port" in said(r)
    _nothing_started(fresh)


def test_missing_postgres_binaries(fresh: Path, tmp_path: Path) -> None:
    r = cli("up", "--state-dir", str(fresh), "--random-weights",
            env={"LABELSTACK_PG_BINDIR": str(tmp_path)})
    assert r.returncode == 2, said(r)
    assert "PostgreSQL binaries" in said(r) and str(tmp_path) in said(r)
    _nothing_started(fresh)


def test_missing_checkpoint_path(fresh: Path) -> None:
    r = cli("up", "--state-dir", str(fresh), env={"SAM2_CHECKPOINT": "/nowhere/sam2.pt"})
    assert r.returncode == 2, said(r)
    assert "SAM2_CHECKPOINT='/nowhere/sam2.pt' does not exist" in said(r)
    _nothing_started(fresh)
    r = cli("up", "--state-dir", str(fresh))  # no weights and no --random-weights
    assert r.returncode == 2 and "--random-weights" in said(r)


def test_stale_pid_file_is_reported_then_cleared_by_down(fresh: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (fresh / "run").mkdir(parents=True)
    PidRecord("s3", dead.pid, 1, free_port(), "/dev/null", "http://127.0.0.1:1").save(
        fresh / "run" / "s3.json")
    r = cli("up", "--state-dir", str(fresh), "--random-weights")
    assert r.returncode == 2, said(r)
    assert "stale PID file" in said(r) and "s3.json" in said(r) and "down" in said(r)
    r = cli("down", "--state-dir", str(fresh))
    assert r.returncode == 0 and "stale PID file removed" in said(r)
    _nothing_started(fresh)
