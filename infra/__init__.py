"""labelstack Pulumi program: one ComponentResource per concern, wired in :mod:`infra.program`."""
