"""The local stack: PostgreSQL, an S3-compatible server, Label Studio and SAM2 on one machine."""
