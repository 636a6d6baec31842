"""Entry point of the policy pack: ``pulumi preview --policy-pack policies/``.

The ONLY module that builds :class:`pulumi_policy.PolicyPack` (which starts the gRPC analyzer
and blocks forever). Everything else imports :mod:`policies.pack`.
"""

import sys
from pathlib import Path

USAGE = """labelstack policy pack (Pulumi CrossGuard).

The Pulumi engine starts this module as an analyzer plugin; run it through the CLI:
  pulumi preview --policy-pack policies/        (with credentials)
  labelstack plan --stack prod                  (offline: mocks + the whole pack)
Rules and their levels: docs/policies.md.

Exit codes: 0 ok (the analyzer runs until the engine stops it)."""

if {"-h", "--help"} & set(sys.argv[1:]):  # answer instead of starting the gRPC analyzer
    print(USAGE)
    raise SystemExit(0)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the pack runs from policies/

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.pack import DESCRIPTION, NAME, policies  # noqa: E402

PolicyPack(name=NAME, description=DESCRIPTION, policies=policies(),
           enforcement_level=EnforcementLevel.MANDATORY)
