"""Declarative, idempotent bootstrap of the labelstack Label Studio projects."""
