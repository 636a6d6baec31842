"""Errors the CLI turns into one clear message and a non-zero exit."""

from __future__ import annotations

from typing import Any


class BootstrapError(Exception):
    """A failure the operator can fix: the message says what and how. Exit code 2."""

    exit_code = 2


class SpecError(BootstrapError):
    """Bad spec input: names the field, the value and the fix."""

    def __init__(self, field: str, value: Any, fix: str):
        self.field, self.value, self.fix = field, value, fix
        super().__init__(f"spec field `{field}` = {value!r}: {fix}")


class ServerError(BootstrapError):
    """Label Studio (or something it calls) refused or could not be reached. Exit code 3."""

    exit_code = 3


class RefusedChange(BootstrapError):
    """A change the bootstrap will not make (it would orphan annotations). Exit code 4."""

    exit_code = 4


class AuthError(ServerError):
    """Label Studio rejected the API key: retrying will not help. Exit code 3."""
