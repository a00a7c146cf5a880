"""One local override of where the broker is, for the commands that dial it (doctor, ota publish/status, simulate,
provision serve): `--broker HOST:PORT` first, then the environment variable GEN_BROKER, then the file
`broker.local` next to the spec (one line HOST:PORT; `gen new` puts it in .gitignore: it is this machine's, not the
project's). The spec keeps the production broker.host; the TLS name checked stays broker.host. Whenever an override
from the environment or the file is in effect, the command says so on stderr."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from generator.cli.terminal import err_console
from generator.core.errors import UserError

ENV_VARIABLE = "GEN_BROKER"
LOCAL_FILE = "broker.local"


def local_broker(spec_path: Path, given: str | None, environ: Mapping[str, str] | None = None
                 ) -> tuple[str | None, str | None]:
    """(HOST:PORT or None, where it came from: None for --broker or nothing, else "$GEN_BROKER" or the file)."""
    if given is not None:
        return given, None
    env = os.environ if environ is None else environ
    if env.get(ENV_VARIABLE, "").strip():
        return env[ENV_VARIABLE].strip(), f"${ENV_VARIABLE}"
    path = Path(spec_path).parent / LOCAL_FILE
    try:
        lines = [line.strip() for line in path.read_text().splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path} cannot be read: {error}", hint=f"write one line HOST:PORT in it, or remove it")
    if len(lines) != 1:
        raise UserError(f"{path}:1: holds {len(lines)} addresses; it holds one line HOST:PORT",
                        hint="write e.g. 127.0.0.1:8883 in it, or remove it")
    return lines[0], str(path)


def broker_option(spec_path: Path, given: str | None) -> str | None:
    """What the command's --broker is, with the override said when it comes from the environment or the file."""
    address, origin = local_broker(spec_path, given)
    if origin is not None:
        err_console.print(f"gen: broker {address} (from {origin}, not broker.host of the spec)")
    return address


def dialled_address(text: str | None, spec) -> tuple[str, int]:
    """(host, port) a command dials: `text` (HOST:PORT, as broker_option gives it), else the spec's broker."""
    if text is None:
        return spec.broker.host, spec.broker.port
    from generator.simulate.device_runs import parse_broker_address   # exit 2 for anything but HOST:PORT

    address = parse_broker_address(text)
    return address.host, address.port
