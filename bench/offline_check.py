"""Time the offline compliance check of a stack, phase by phase.

``python bench/offline_check.py [--stack prod] [--runs 5]``: the cold CLI end to end (a fresh
process, as ``make plan`` runs it), then in one process the program under mocks (the
baseline every offline test pays anyway) and the pack evaluation on its plan, with the pack's
cost as a ratio of the baseline.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(stack: str = "prod", runs: int = 5) -> None:
    """Print a table of median / max seconds per phase."""
    from infra import offline
    from policies.offline import evaluate

    cold = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "infra.plan", "--stack", stack, "--json"],
                       cwd=ROOT, capture_output=True, check=False)
        cold.append(time.perf_counter() - t)
    program, pack = [], []
    for _ in range(runs):
        t = time.perf_counter()
        plan = offline.run(stack)
        t1 = time.perf_counter()
        evaluate(plan)
        program.append(t1 - t)
        pack.append(time.perf_counter() - t1)
    table = Table(title=f"offline check of {stack}: {len(plan.resources)} resources, "
                  f"{runs} runs")
    for col in ("phase", "median s", "max s", "vs program"):
        table.add_column(col)
    base = statistics.median(program)
    for name, xs in (("CLI end to end (fresh process)", cold), ("program under mocks", program),
                     ("policy pack evaluation", pack)):
        med = statistics.median(xs)
        table.add_row(name, f"{med:.2f}", f"{max(xs):.2f}", f"{med / base:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    typer.run(main)
