"""Benchmark the bootstrap: sync of N objects (default 10,000; one object per task) and the
time of a no-op apply, next to the upstream way (plain label-studio-sdk calls:
projects.create, import_storage.s3.create, import_storage.s3.sync) in the same process,
against the same servers.

    .venvs/main/bin/python -m bench.bench_bootstrap            # 10,000 objects
    .venvs/main/bin/python -m bench.bench_bootstrap --objects 2000

Starts its own PostgreSQL, moto S3 and Label Studio on loopback (tests/servers.py) and stops
them after. Prints a table; timings are of this machine, for comparison between rows only.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import httpx
import typer
import yaml
from label_studio_sdk import LabelStudio
from rich.console import Console
from rich.progress import track
from rich.table import Table

from bootstrap import spec as S
from bootstrap.client import RequestLog, Server
from bootstrap.label_configs import sam2_segmentation
from bootstrap.planner import Planner
from tests.servers import run_label_studio, run_postgres, run_s3_server

BUCKET = "labelstack-bench"
PREFIX = "images/"
console = Console(stderr=True)


def upload(s3, n: int) -> float:
    s3.create_bucket(Bucket=BUCKET)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(track(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}{i:06d}.jpg",
                                                    Body=b"\xff\xd8\xff\xd9"), range(n)),
                   total=n, description="uploading objects", console=console))
    return time.perf_counter() - t0


def spec_file(tmp: Path, key: str) -> Path:
    raw = {"version": 1, "projects": [{
        "key": key, "title": f"Bench {key}",
        "label_config": {"template": "sam2_segmentation", "labels": ["Object"]},
        "import_storage": [{"title": "images", "bucket": BUCKET, "prefix": PREFIX,
                            "task_format": "object_per_task"}]}]}
    path = tmp / f"{key}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def ours(url: str, token: str, spec_path: Path) -> tuple[float, int, int]:
    spec = S.load_spec(spec_path, env={})
    srv = Server(url, token)
    t0 = time.perf_counter()
    planner = Planner(srv, spec, spec_path.parent, console=console)
    reports = planner.apply(planner.plan())
    dt = time.perf_counter() - t0
    srv.close()
    return dt, reports[0]["project_tasks"], len(srv.log.writes)


def upstream(url: str, token: str, n: int) -> tuple[float, int, int]:
    """What the SDK docs do: create, attach storage, sync, poll until done."""
    log = RequestLog()
    http = httpx.Client(timeout=3600, event_hooks={"request": [log.hook]})
    ls = LabelStudio(base_url=url, api_key=token, httpx_client=http)
    t0 = time.perf_counter()
    project = ls.projects.create(title=f"Bench upstream {n}",
                                 label_config=sam2_segmentation(["Object"]))
    st = ls.import_storage.s3.create(project=project.id, bucket=BUCKET, prefix=PREFIX,
                                     use_blob_urls=True, presign=False, title="images")
    ls.import_storage.s3.sync(id=st.id)
    while ls.import_storage.s3.get(id=st.id).status in ("queued", "in_progress"):
        time.sleep(1)
    dt = time.perf_counter() - t0
    tasks = ls.projects.get(id=project.id).task_number or 0
    http.close()
    return dt, tasks, len(log.writes)


def noop(url: str, token: str, spec_path: Path, runs: int) -> tuple[list[float], int, int]:
    spec = S.load_spec(spec_path, env={})
    times, writes, requests = [], 0, 0
    for _ in range(runs):
        srv = Server(url, token)
        t0 = time.perf_counter()
        planner = Planner(srv, spec, spec_path.parent, console=console)
        plan = planner.plan()
        planner.apply(plan)
        times.append(time.perf_counter() - t0)
        assert plan.empty
        writes += len(srv.log.writes)
        requests = len(srv.log.requests)
        srv.close()
    return times, writes, requests


def main(objects: Annotated[int, typer.Option(help="objects in the bucket")] = 10_000,
         rounds: Annotated[int, typer.Option(
             help="sync rounds; the order alternates (ours first, then upstream first) so "
                  "neither side always runs on the warmer or emptier database")] = 2,
         noop_runs: Annotated[int, typer.Option(help="no-op applies to time")] = 5) -> None:
    import statistics
    import tempfile

    o_times, u_times, o_tasks, u_tasks, o_writes, u_writes = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, run_postgres() as pg, \
            run_s3_server() as s3srv, run_label_studio(pg, s3srv) as ls:
        up = upload(s3srv.client(), objects)
        tok = ls.legacy_token
        for r in range(rounds):
            spec_path = spec_file(Path(tmp), f"bench-sync-{r}")
            steps = [("ours", lambda p=spec_path: ours(ls.url, tok, p)),
                     ("upstream", lambda r=r: upstream(ls.url, tok, r))]
            for name, fn in (steps if r % 2 == 0 else steps[::-1]):
                dt, tasks, writes = fn()
                console.print(f"round {r + 1}: {name} {dt:.1f} s, {tasks} tasks")
                (o_times if name == "ours" else u_times).append(dt)
                (o_tasks if name == "ours" else u_tasks).append(tasks)
                (o_writes if name == "ours" else u_writes).append(writes)
        n_times, n_writes, n_requests = noop(ls.url, tok, spec_path, noop_runs)
    o_med, u_med = statistics.median(o_times), statistics.median(u_times)
    table = Table(title=f"Bootstrap benchmark ({objects:,} objects, one task each, "
                        f"{rounds} round(s))")
    for c in ("measure", "labelstack bootstrap", "upstream SDK calls", "ratio"):
        table.add_column(c)
    table.add_row("upload to moto (setup)", f"{up:.1f} s", "", "")
    table.add_row("create project + storage, sync, wait (median)", f"{o_med:.1f} s",
                  f"{u_med:.1f} s", f"{o_med / u_med:.2f}x")
    table.add_row("  each round", ", ".join(f"{t:.1f}" for t in o_times),
                  ", ".join(f"{t:.1f}" for t in u_times), "")
    ok = all(t == objects for t in o_tasks + u_tasks)
    table.add_row("tasks created per round", ", ".join(f"{t:,}" for t in o_tasks),
                  ", ".join(f"{t:,}" for t in u_tasks), "all equal N" if ok else "DIFFERENT")
    table.add_row("write requests (first apply)", str(max(o_writes)), str(max(u_writes)), "")
    table.add_row(f"no-op apply (median of {noop_runs})",
                  f"{statistics.median(n_times):.2f} s",
                  "n/a: re-running creates a duplicate project", "")
    table.add_row("no-op apply: write / total requests", f"{n_writes} / {n_requests}", "", "")
    Console(width=140).print(table)
    if not ok or n_writes:
        raise typer.Exit(1)


if __name__ == "__main__":
    typer.run(main)
