"""OUT is written through write_tree: every file and folder with its mode whatever the umask, only what changed
is written, and a file that already holds its content is not touched."""

from __future__ import annotations

import os
import stat

from generator.core.files import PRIVATE_DIR_MODE, PUBLIC_DIR_MODE, SECRET_MODE, write_tree


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_secrets_are_0600_in_0700_folders_and_everything_else_public(tmp_path):
    old_umask = os.umask(0o077)
    try:
        changed = write_tree(tmp_path / "out", {"devices/a/client.key": b"k", "devices/a/firmware/src/x.c": b"x",
                                                "broker/mosquitto.conf": b"c"},
                             modes={"devices/a/client.key": SECRET_MODE})
    finally:
        os.umask(old_umask)
    out = tmp_path / "out"
    assert sorted(changed) == ["broker/mosquitto.conf", "devices/a/client.key", "devices/a/firmware/src/x.c"]
    assert mode(out / "devices/a/client.key") == SECRET_MODE and mode(out / "devices/a") == PRIVATE_DIR_MODE
    assert mode(out / "devices/a/firmware/src/x.c") == 0o644 and mode(out / "devices") == PUBLIC_DIR_MODE
    assert mode(out / "devices/a/firmware/src") == PUBLIC_DIR_MODE and mode(out) == PUBLIC_DIR_MODE
    assert not [name for name in os.listdir(out) if name.startswith(".staging")]


def test_a_second_write_of_the_same_tree_touches_nothing_and_corrects_modes(tmp_path):
    files = {"a/b.txt": b"one", "a/c.txt": b"two"}
    write_tree(tmp_path, files)
    os.utime(tmp_path / "a/b.txt", (1, 1))
    os.chmod(tmp_path / "a/c.txt", 0o600)
    os.chmod(tmp_path / "a", 0o711)
    assert write_tree(tmp_path, files) == []
    assert os.stat(tmp_path / "a/b.txt").st_mtime == 1
    assert mode(tmp_path / "a/c.txt") == 0o644 and mode(tmp_path / "a") == PUBLIC_DIR_MODE


def test_only_the_changed_file_is_replaced(tmp_path):
    write_tree(tmp_path, {"a.txt": b"one", "b.txt": b"two"})
    assert write_tree(tmp_path, {"a.txt": b"one", "b.txt": b"three"}) == ["b.txt"]
    assert (tmp_path / "b.txt").read_bytes() == b"three"
