"""Entry point for `pulumi up` (Pulumi.yaml `main: infra/`)."""

import sys
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # make `infra` importable

from infra import program

for _name, _value in program.build().items():
    pulumi.export(_name, _value)
