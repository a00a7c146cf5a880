"""The broker's `$7$` password file: our PBKDF2-SHA512 hash is the one mosquitto_passwd writes for the same salt."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from generator.broker.render import hash_password_pbkdf2_sha512, password_matches


def test_our_pbkdf2_sha512_hash_equals_mosquitto_passwds_for_the_same_salt(tmp_path):
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-H", "sha512-pbkdf2", "-c", "-b", passwd, "sensor-a", "s3cret pass"],
                   check=True, capture_output=True)
    username, theirs = passwd.read_text().strip().split(":", 1)
    _, kind, iterations, salt_b64, _ = theirs.split("$")
    ours = hash_password_pbkdf2_sha512("s3cret pass", salt=base64.b64decode(salt_b64), iterations=int(iterations))
    assert (username, kind, ours) == ("sensor-a", "7", theirs)
    assert password_matches("s3cret pass", theirs) and not password_matches("s3cret pas", theirs)
