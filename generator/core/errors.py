"""The two kinds of failure a user can meet, and the exit code each one maps to.

UserError: the user's input is wrong (spec, flags, files). Exit 2, one screen, names where and what to do.
ToolError: an external tool or service failed (PlatformIO, mosquitto, g++, the network). Exit 1.
Neither is ever shown as a Python traceback.
"""

from __future__ import annotations


class GenError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class UserError(GenError):
    exit_code = 2


class ToolError(GenError):
    exit_code = 1
