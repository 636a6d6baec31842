"""Real servers on loopback ports (PostgreSQL, S3-compatible moto, Label Studio), started by
the tests and stopped after. Filled in by the bootstrap work (issue 4)."""
