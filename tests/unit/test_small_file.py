import os
import threading

import pytest

from mmserver import small_file


def test_a_regular_file_is_read_whole_and_a_link_to_one_is_followed(tmp_path):
    path = tmp_path / "mm.toml"
    path.write_bytes(b"[modes.duel]\n")
    (tmp_path / "link").symlink_to(path)
    assert small_file.read_bytes(path) == small_file.read_bytes(tmp_path / "link") == b"[modes.duel]\n"


def test_the_bound_is_inclusive(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert small_file.read_bytes(path, max_bytes=10) == b"x" * 10
    with pytest.raises(small_file.NotASmallFile, match="^is larger than 9 bytes$"):
        small_file.read_bytes(path, max_bytes=9, shown="9 bytes")


def test_devices_fifos_and_directories_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo, tmp_path):
        errors: list[Exception] = []
        reader = threading.Thread(target=lambda: errors.append(_refusal(path)), daemon=True)
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), f"{path}: blocked"
        assert str(errors[0]) == "is not a regular file"


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        small_file.read_bytes(tmp_path / "missing")


def _refusal(path) -> Exception:
    try:
        small_file.read_bytes(path)
    except small_file.NotASmallFile as error:
        return error
    raise AssertionError(f"{path} was read")
