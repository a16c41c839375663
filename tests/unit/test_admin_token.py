"""The generated admin token: reused across starts only from a file that can be trusted."""
from __future__ import annotations

import os
import re
import stat
import threading

import pytest

from mmserver import admin_token


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def leftovers(directory) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".admin.token.")]


def test_first_start_generates_a_token_mode_0600(tmp_path):
    path = tmp_path / "data" / "admin.token"  # the data dir does not exist yet
    prepared = admin_token.prepare(path)
    assert not prepared.reused and prepared.why_new == admin_token.NONE_YET
    assert len(prepared.token) >= 40
    assert path.read_text() == prepared.token + "\n"
    assert mode(path) == 0o600
    assert leftovers(path.parent) == []


def test_a_later_start_reuses_the_token(tmp_path):
    path = tmp_path / "admin.token"
    first = admin_token.prepare(path)
    second = admin_token.prepare(path)
    assert second.reused and second.why_new is None
    assert second.token == first.token
    assert path.read_text() == first.token + "\n"


def test_a_token_written_by_the_operator_is_reused(tmp_path):
    path = tmp_path / "admin.token"
    path.write_text("  my-own_token.123~  \n")
    path.chmod(0o400)
    prepared = admin_token.prepare(path)
    assert prepared.reused and prepared.token == "my-own_token.123~"


@pytest.mark.parametrize("file_mode", [0o640, 0o604, 0o660, 0o644, 0o666, 0o610, 0o601])
def test_a_file_others_may_use_is_replaced(tmp_path, file_mode):
    path = tmp_path / "admin.token"
    path.write_text("exposed-token\n")
    path.chmod(file_mode)
    prepared = admin_token.prepare(path)
    assert not prepared.reused and prepared.token != "exposed-token"
    assert f"mode {file_mode:04o}" in prepared.why_new
    assert path.read_text() == prepared.token + "\n" and mode(path) == 0o600


@pytest.mark.parametrize("content,why", [
    (b"", "empty"),
    (b"  \n\n", "empty"),
    (b"two words\n", "does not hold a token"),
    (b"tab\there\n", "does not hold a token"),
    (b"nul\x00byte\n", "does not hold a token"),
    ("t\u00f6ken\n".encode(), "does not hold a token"),
    (b"\xff\xfe", "does not hold a token"),
    (b"x" * (admin_token.MAX_FILE_BYTES + 1), "too large"),
])
def test_a_file_without_one_token_is_replaced(tmp_path, content, why):
    path = tmp_path / "admin.token"
    path.write_bytes(content)
    path.chmod(0o600)
    prepared = admin_token.prepare(path)
    assert not prepared.reused and why in prepared.why_new
    assert path.read_text() == prepared.token + "\n"


def test_a_symbolic_link_is_replaced_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("linked-token\n")
    target.chmod(0o600)
    path = tmp_path / "admin.token"
    path.symlink_to(target)
    prepared = admin_token.prepare(path)
    assert not prepared.reused and "symbolic link" in prepared.why_new
    assert prepared.token != "linked-token"
    assert not path.is_symlink() and path.read_text() == prepared.token + "\n"
    assert target.read_text() == "linked-token\n"  # the link's target is untouched


def test_a_fifo_is_replaced_without_hanging(tmp_path):
    path = tmp_path / "admin.token"
    os.mkfifo(path, 0o600)
    result = {}
    worker = threading.Thread(target=lambda: result.update(prepared=admin_token.prepare(path)),
                              daemon=True)
    worker.start()
    worker.join(5)
    assert not worker.is_alive(), "opening the FIFO blocked"
    assert "not a regular file" in result["prepared"].why_new
    assert stat.S_ISREG(os.lstat(path).st_mode)


def test_a_directory_in_the_way_fails_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "admin.token"
    path.mkdir()
    with pytest.raises(OSError):
        admin_token.prepare(path)
    assert path.is_dir() and leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_file_owned_by_another_user_is_replaced(tmp_path):
    path = tmp_path / "admin.token"
    path.write_text("planted-token\n")
    path.chmod(0o600)
    os.chown(path, 12345, 12345)
    prepared = admin_token.prepare(path)
    assert not prepared.reused and "owned by uid 12345" in prepared.why_new
    assert prepared.token != "planted-token" and os.lstat(path).st_uid == os.geteuid()


def test_a_token_file_an_operator_points_to_is_read_whatever_its_mode(tmp_path):
    path = tmp_path / "admin.token"
    path.write_text("  from-the-operator\n")
    path.chmod(0o644)  # unlike the generated file, trusted as given: the operator chose it
    assert admin_token.read_file(path) == "from-the-operator"


def test_an_empty_or_missing_token_file_says_which_and_why(tmp_path):
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    with pytest.raises(admin_token.TokenFileError, match=f"^{re.escape(str(empty))} is empty$"):
        admin_token.read_file(empty)
    with pytest.raises(admin_token.TokenFileError, match="^cannot read .*missing.token: No such file"):
        admin_token.read_file(tmp_path / "missing.token")
