"""Reading ``Pulumi.<stack>.yaml`` and checking its keys before anything is planned.

Every mistake is a :class:`~infra.config.ConfigError` with one line per problem, naming the
file or key and the fix: a YAML syntax error (file, line, column), a file without the
top-level ``config:`` mapping, a key in a namespace the program does not read, an unknown key
in ``labelstack:`` or ``aws:`` (with a "did you mean" from :mod:`difflib`), a credential
stored in plaintext instead of as a Pulumi secret (``secure:``).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.config import NAMESPACE, ConfigError, config_keys

#: The provider namespace the program reads besides its own.
PROVIDER = "aws"
#: The engine's own namespace (``pulumi:tags``...): Pulumi checks it, not this program.
ENGINE = "pulumi"
#: Credentials: allowed only as Pulumi secrets (``pulumi config set --secret``).
SECRET_KEYS = frozenset({"aws:accessKey", "aws:secretKey", "aws:token"})
#: Top-level keys Pulumi allows in a stack file.
STACK_FILE_KEYS = ("config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment")
#: What the offline plan uses for a secret it cannot decrypt.
SECRET_PLACEHOLDER = "[secret]"


@functools.cache
def provider_keys() -> frozenset[str]:
    """The ``aws:`` keys of the installed pulumi-aws provider, read from the source of its
    config module (the provider is not imported: that takes seconds)."""
    spec = importlib.util.find_spec("pulumi_aws")
    if spec is None or spec.origin is None:
        raise ConfigError("pulumi-aws is not installed: run `make setup` (requirements/infra.txt)")
    source = (Path(spec.origin).parent / "config" / "vars.py").read_text()
    return frozenset(re.findall(r"__config__\.get\w*\('(\w+)'\)", source))


def known_keys() -> dict[str, frozenset[str]]:
    """namespace -> keys the program reads."""
    return {NAMESPACE: frozenset(config_keys()), PROVIDER: provider_keys()}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean X?)"`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def is_secure(value: Any) -> bool:
    """A stack-file value Pulumi encrypted: ``{secure: <ciphertext>}``."""
    return isinstance(value, Mapping) and set(value) == {"secure"}


def check_keys(keys: Iterable[str], plaintext: Iterable[str] = ()) -> list[str]:
    """One line per unknown namespace or key among ``keys`` (``ns:key``), and per credential
    among ``plaintext`` (keys whose values are not Pulumi secrets)."""
    known = known_keys()
    lines = []
    for full in keys:
        ns, sep, key = full.partition(":")
        if not sep:
            lines.append(f"{full}: a key without namespace; write {NAMESPACE}:{full} or "
                         f"{PROVIDER}:{full}")
        elif ns == ENGINE:
            continue
        elif ns not in known:
            hint = did_you_mean(ns, known)
            lines.append(f"{full}: unknown namespace {ns!r}{hint}; this program reads "
                         f"{NAMESPACE}: and {PROVIDER}: keys; fix or remove the key")
        elif key not in known[ns]:
            hint = did_you_mean(key, known[ns])
            hint = hint.replace("mean ", f"mean {ns}:") if hint else ""
            what = "labelstack's config keys (README)" if ns == NAMESPACE else \
                "the pulumi-aws provider's config keys"
            lines.append(f"{full}: unknown key{hint or f'; not one of {what}'}; fix the "
                         "spelling or remove it")
    for full in plaintext:
        if full in SECRET_KEYS:
            lines.append(f"{full}: a credential in plaintext; store it encrypted with "
                         f"`pulumi config set --secret {full} <value>` (or use an AWS profile "
                         "or SSO instead)")
    return lines


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path.name}:{mark.line + 1}:{mark.column + 1}" if mark else path.name
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return ConfigError(f"{where}: YAML syntax error: {detail}; fix the indentation or quoting "
                       "at that line (keys go two spaces under `config:`)")


def read(path: Path) -> dict[str, Any]:
    """The ``config:`` mapping of a stack file, checked. Raises :class:`ConfigError`."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    name = path.name
    if not isinstance(doc, dict) or "config" not in doc:
        stray = sorted(str(k) for k in doc if k not in STACK_FILE_KEYS) \
            if isinstance(doc, dict) else []
        fix = (f"{', '.join(stray)} must be indented under it" if stray
               else "start the file with `config:` and indent the keys under it")
        raise ConfigError(f"{name}: no top-level `config:` mapping; {fix}")
    config = doc["config"] or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{name}: `config:` holds {type(config).__name__}, not a mapping; "
                          "indent keys such as labelstack:profile under it")
    lines = [f"{k}: at the top level of {name}; indent it under `config:`"
             for k in doc if k not in STACK_FILE_KEYS]
    lines += check_keys(config, [k for k, v in config.items() if not is_secure(v)])
    if lines:
        raise ConfigError(f"{name}: invalid stack configuration:\n  " + "\n  ".join(lines))
    return {k: SECRET_PLACEHOLDER if is_secure(v) else v for k, v in config.items()}
