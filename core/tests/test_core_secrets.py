"""Secrets never show themselves; a secret is one line; errors name the file or key,
never the content; a file others may read is a warning naming the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infrascope_core.errors import ConfigError
from infrascope_core.secrets import Secret, check_secret, read_secret_file, readable_by_others

TOKEN = "s3cr3t-token-value"


def test_a_secret_never_shows_itself() -> None:
    s = Secret(TOKEN)
    assert TOKEN not in repr(s) and TOKEN not in str(s) and TOKEN not in f"{s}"
    assert s.reveal() == TOKEN and s == Secret(TOKEN) and s != TOKEN
    assert len({s, Secret(TOKEN)}) == 1 and bool(s) and not Secret("")


@pytest.mark.parametrize("value,problem", [
    (f"{TOKEN}\nsecond", "holds 2 lines"), (f"{TOKEN} x", "contains whitespace"),
    (f"{TOKEN}\t", "contains whitespace"), (f"{TOKEN}\x00", "contains control characters"),
])
def test_a_token_is_one_line_without_whitespace(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_secret(value, "HCLOUD_TOKEN")
    assert str(err.value) == f"HCLOUD_TOKEN: must be one line without whitespace (it {problem})"
    with pytest.raises(ConfigError) as err:
        check_secret(value, "cloud.token_file", "/etc/t")
    assert str(err.value) == \
        f"cloud.token_file: /etc/t {problem}; a token is one line without whitespace"
    assert TOKEN not in str(err.value)


def test_a_password_may_hold_inner_spaces() -> None:
    assert check_secret("correct horse", "k", spaces=True) == "correct horse"
    for bad in (" lead", "trail ", "two\nlines", "tab\there"):
        with pytest.raises(ConfigError, match="^k: must be one line"):
            check_secret(bad, "k", spaces=True)
    with pytest.raises(ConfigError, match="^k: /p holds 2 lines; a password is one line$"):
        check_secret("a\nb", "k", "/p", spaces=True)


@pytest.mark.parametrize("content", [TOKEN, TOKEN + "\n", TOKEN + "\r\n"])
def test_a_file_may_end_with_one_line_end(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content.encode())
    path.chmod(0o600)
    warnings: list[str] = []
    assert read_secret_file(path, "k", warnings).reveal() == TOKEN
    assert warnings == []


@pytest.mark.parametrize("content,problem", [
    (b"", "is empty"), (b"\n", "is empty"), (TOKEN.encode() + b"\n\n", "holds 2 lines"),
    (b"\xff\xfe", "is not UTF-8 text"),
])
def test_bad_files_name_the_file_never_the_content(tmp_path: Path, content: bytes,
                                                   problem: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_secret_file(path, "api.token_file")
    assert str(err.value).startswith(f"api.token_file: {path} {problem}")
    assert TOKEN not in str(err.value)
    with pytest.raises(ConfigError, match=f"^api.token_file: cannot read {tmp_path}/none: "):
        read_secret_file(tmp_path / "none", "api.token_file")


def test_a_file_others_may_read_is_a_warning_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "my token"
    path.write_text(TOKEN)
    path.chmod(0o640)
    warnings: list[str] = []
    read_secret_file(path, "grafana.token_file", warnings)
    assert warnings == [f"grafana.token_file: {path} holds a secret and is accessible by "
                        f"group or others (mode 0640); run chmod 600 '{path}'"]
    assert readable_by_others(path, os.stat(path).st_mode & ~0o077, "k") is None
    assert readable_by_others(tmp_path, os.stat(tmp_path).st_mode, "k") is None  # a folder
