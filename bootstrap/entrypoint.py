"""Container entrypoint for the Kubernetes Job: wait for Label Studio, then apply, retrying
transient failures (server still migrating, ML backend still loading its model).

Environment: LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY or LABEL_STUDIO_API_KEY_FILE,
BOOTSTRAP_SPEC (default: the shipped spec), LABELSTACK_STACK_OUTPUTS (JSON file),
BOOTSTRAP_WAIT_SECONDS (default 600), BOOTSTRAP_ATTEMPTS (default 5),
BOOTSTRAP_RETRY_SECONDS (default 20).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from bootstrap.cli import DEFAULT_SPEC
from bootstrap.client import Server, read_token, wait_for_server
from bootstrap.errors import AuthError, BootstrapError, ServerError
from bootstrap.planner import Planner, render_plan
from bootstrap.spec import load_spec


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    console = Console(stderr=True)
    url = env.get("LABEL_STUDIO_URL", "")
    spec_path = Path(env.get("BOOTSTRAP_SPEC") or DEFAULT_SPEC)
    stack = env.get("LABELSTACK_STACK_OUTPUTS")
    attempts = int(env.get("BOOTSTRAP_ATTEMPTS", "5"))
    pause = float(env.get("BOOTSTRAP_RETRY_SECONDS", "20"))
    try:
        if not url:
            raise BootstrapError("LABEL_STUDIO_URL is not set")
        spec = load_spec(spec_path, env=env, stack_outputs_file=Path(stack) if stack else None)
        token = read_token(env=env)
        wait_for_server(url, timeout=float(env.get("BOOTSTRAP_WAIT_SECONDS", "600")),
                        on_wait=lambda last: console.print(f"waiting for {url} ({last})"))
    except BootstrapError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}")
        return e.exit_code
    for attempt in range(1, attempts + 1):
        try:
            srv = Server(url, token)
            srv.whoami()
            planner = Planner(srv, spec, spec_path.parent, console=console)
            plan = planner.plan()
            render_plan(plan, console)
            planner.apply(plan)
            console.print(f"bootstrap done: {len(srv.log.writes)} write request(s)")
            return 0
        except AuthError as e:  # a wrong key stays wrong
            console.print(f"[bold red]error:[/] {escape(str(e))}")
            return e.exit_code
        except ServerError as e:  # transient: retry, then give up with the last message
            console.print(f"[yellow]attempt {attempt}/{attempts} failed:[/] {escape(str(e))}")
            if attempt == attempts:
                return e.exit_code
            time.sleep(pause)
        except BootstrapError as e:  # bad input or refused change: retrying will not help
            console.print(f"[bold red]error:[/] {escape(str(e))}")
            return e.exit_code
    return 1


if __name__ == "__main__":
    sys.exit(main())
