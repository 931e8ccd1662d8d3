"""Secrets: tokens and passwords that no repr, log line or error message may show.

One reading for every component (the exporter's Hetzner tokens and Robot password, the
recommender's bearer tokens, ``infrascope setup``): a secret is one line — a token one
line without whitespace, a password may hold inner spaces — read from a file (one
trailing line end allowed, as editors save files) or given in the environment or YAML.
A token with a second line or a space is a copy-and-paste accident that would fail at
run time as if the API were down, so it fails at start, with a message that names the
file or key and never the content. A secret file that group or others may read is a
warning, not an error (:func:`readable_by_others`).
"""

from __future__ import annotations

import os
import re
import shlex
import stat
from pathlib import Path

from .errors import ConfigError


class Secret:
    """A string that never shows itself: repr/str give ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _problem(value: str, spaces: bool) -> str | None:
    """What is wrong with ``value`` as a secret (``None``: nothing)."""
    lines = len(re.split(r"\r\n|\r|\n", value))
    if lines > 1:
        return f"holds {lines} lines"
    if any(not c.isprintable() and not c.isspace() for c in value):
        return "contains control characters"
    if any(c.isspace() and not (spaces and c == " ") for c in value) or (
            spaces and value != value.strip()):
        return "contains whitespace"
    return None


def check_secret(value: str, key: str, where: str | None = None, *,
                 spaces: bool = False) -> str:
    """``value`` if it is one line without whitespace (``spaces``: a password, inner
    spaces allowed); else :class:`ConfigError` naming ``key`` and ``where`` it came from
    (a file), never the value."""
    rule = "one line" if spaces else "one line without whitespace"
    if not value.strip():
        raise ConfigError(f"{key}: {where} is empty" if where else f"{key}: is empty")
    problem = _problem(value, spaces)
    if problem and where:
        noun = "a password" if spaces else "a token"
        raise ConfigError(f"{key}: {where} {problem}; {noun} is {rule}")
    if problem:
        raise ConfigError(f"{key}: must be {rule} (it {problem})")
    return value


def strip_line_end(text: str) -> str:
    """One trailing line end is how editors save a file; anything else is content."""
    for end in ("\r\n", "\n"):
        if text.endswith(end):
            return text[:-len(end)]
    return text


def read_secret_file(path: str | os.PathLike[str], key: str,
                     warnings: list[str] | None = None, *, spaces: bool = False) -> Secret:
    """The secret in ``path`` (see :func:`check_secret`); a file readable by group or
    others adds a warning to ``warnings``. Errors name ``key`` and the file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {name}: {exc.strerror}") from None
    try:
        text = strip_line_end(raw.decode())
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {name} is not UTF-8 text") from None
    check_secret(text, key, name, spaces=spaces)
    if warnings is not None:
        warning = readable_by_others(name, mode, key)
        if warning:
            warnings.append(warning)
    return Secret(text)


def readable_by_others(path: str | Path, mode: int, key: str) -> str | None:
    """The warning for a secret file (or a configuration holding secrets) of ``mode``
    that group or others may access, naming the fix; ``None`` when only its owner may."""
    if not stat.S_ISREG(mode) or not mode & 0o077:
        return None
    return (f"{key}: {path} holds a secret and is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 {shlex.quote(str(path))}")
