"""Entry point of the policy pack: ``pulumi preview --policy-pack policies/``.

The ONLY module that builds :class:`pulumi_policy.PolicyPack` (which starts the gRPC analyzer
and blocks forever). Everything else imports :mod:`policies.pack`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the pack runs from policies/

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import DESCRIPTION, NAME, policies

PolicyPack(name=NAME, description=DESCRIPTION, policies=policies(),
           enforcement_level=EnforcementLevel.MANDATORY)
