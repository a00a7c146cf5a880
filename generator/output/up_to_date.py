"""`gen generate` with nothing to do: what the last full run of the whole fleet depended on, stamped, so that a run
on the same inputs says so without reading the spec, opening the PKI or rendering anything (as make does with a
target newer than its sources).

    OUT/.generate-stamp.json   0600; file stamps and digests only, never a key, a password or an environment value

A run takes the short way only when every one of these is as the last full run left it (anything else: the full way,
which writes the stamp again):
- gen itself (its code and templates, render_cache.code_digest), the Python that runs it and its installed packages
  (the site-packages folder changes with every install);
- the spec (its resolved path) and OUT;
- every file and folder below the spec's folder, OUT and .git aside: the spec, secrets.yaml, the PKI, your src/,
  lib/ and components/ and anything else there (one stat each, as git's index does it, and the content of a file
  changed within 2 s of the stamp, as git does for "racily clean" entries); the PKI's folder too when it lies
  elsewhere;
- the values of the environment variables the spec names (`${VAR}`), as one digest;
- every file gen wrote in OUT (the manifest's list), the manifest, the render cache and each device's firmware link;
- the clock: before the CRL falls due for re-signing, before a CA or the broker's certificate expires, and within a
  day of the full run.
A spec whose devices make their own keys (their standing moves with time), that trusts a broker certificate from
elsewhere or that names folders outside its own (local libraries) always takes the full way, as does `--device`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from generator.core.files import SECRET_MODE, write_atomic
from generator.output.render_cache import code_digest, stamp

if TYPE_CHECKING:
    from generator.output.generate import GeneratedOutput
    from generator.spec.model import Spec

STAMP_NAME = ".generate-stamp.json"
STAMP_VERSION = 1
LONGEST_SHORT_WAY = dt.timedelta(days=1)   # a full run at least once a day, whatever the clock may change
_SKIPPED_FOLDERS = (".git",)


@dataclass(frozen=True)
class RecordedRun:
    """What the full run printed of itself (generator.cli.generate_commands prints it again)."""

    out_dir: Path
    devices: tuple[str, ...]
    apps: tuple[str, ...]          # the user's app sources, as printed
    pki_dir: str


@dataclass(frozen=True)
class RunInputs:
    """What a full run depended on beyond the files below the spec's folder (see the module's docstring)."""

    spec_path: Path
    out_dir: Path
    pki_dir: Path
    env: Mapping[str, str]            # the variables the spec names, with their values
    generated: tuple[str, ...]        # every file gen wrote in OUT, relative to OUT
    links: tuple[str, ...]            # each device's firmware folder (a link with secrets: nvs), relative to OUT
    valid_until: dt.datetime


def _environment() -> dict[str, object]:
    packages = stamp(sysconfig.get_paths()["purelib"])
    return {"gen": code_digest(), "python": sys.version, "packages": list(packages) if packages else None}


def _env_digest(env: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()


def _stamp_of(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_mode]


def _tree(root: Path, skipped: Iterable[Path]) -> dict[str, object]:
    """A stamp of every file, link and folder below `root` (the folders in `skipped` and .git aside)."""
    skip = {os.path.realpath(path) for path in skipped}
    stamps: dict[str, object] = {}
    pending = [str(root)]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name in _SKIPPED_FOLDERS or os.path.realpath(entry.path) in skip:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:          # gone since the folder was listed: nothing to compare with
                continue
            stamps[entry.path] = _stamp_of(info)
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return stamps


def _lstamp(path: str) -> list[int] | None:
    try:
        return _stamp_of(os.lstat(path))
    except OSError:
        return None


def _state(spec_path: Path, out_dir: Path, pki_dir: Path, env_digest: str, generated: Iterable[str],
           spec_tree: dict[str, object] | None = None) -> dict:
    """`spec_tree`: the spec folder's tree when the caller has just walked it."""
    roots = [spec_path.parent] + ([] if pki_dir.is_relative_to(spec_path.parent) else [pki_dir])
    trees = [spec_tree if index == 0 and spec_tree is not None else _tree(root, [out_dir])
             for index, root in enumerate(roots)]
    return {
        "environment": _environment(),
        "spec": str(spec_path), "out": str(out_dir), "pki": str(pki_dir), "env": env_digest,
        "trees": trees,
        "roots": [_lstamp(str(root)) for root in roots],
        "out_files": {name: _lstamp(os.path.join(out_dir, name)) for name in generated},
    }


# A file changed within this long before its stamp was taken could change again with the same stamp on a filesystem
# with coarse times (as git's "racily clean" entries): its content is compared too.
_RACY_NS = 2_000_000_000


def _racy_files(state: dict, taken_ns: int) -> list[str]:
    return sorted(path for tree in state["trees"] for path, stamp in tree.items()
                  if stamp[1] >= taken_ns - _RACY_NS and not stamp[3] & 0o040000)


def _digests(paths: Iterable[str]) -> dict[str, str | None]:
    digests: dict[str, str | None] = {}
    for path in paths:
        try:
            with open(path, "rb") as file:
                digests[path] = hashlib.sha256(file.read()).hexdigest()
        except OSError:
            digests[path] = None
    return digests


def record_run(inputs: RunInputs, recorded: RecordedRun, now: dt.datetime,
               spec_tree: dict[str, object] | None = None) -> None:
    """After a full run of the whole fleet: what it depended on, for the next run to compare. Written last.
    `spec_tree`: the spec folder's files as the caller has just found them (input_snapshot's form)."""
    out_dir = inputs.out_dir.resolve()
    target = out_dir / STAMP_NAME
    target.unlink(missing_ok=True)        # a stamp left by an earlier run must not be taken for this one
    taken_ns = dt.datetime.now(dt.timezone.utc).timestamp() * 1e9
    state = _state(inputs.spec_path.resolve(), out_dir, inputs.pki_dir.resolve(), _env_digest(inputs.env),
                   (*inputs.generated, *inputs.links), spec_tree)
    document = {
        "contents": _digests(_racy_files(state, int(taken_ns))),
        "version": STAMP_VERSION,
        "valid_until": min(inputs.valid_until, now + LONGEST_SHORT_WAY).timestamp(),
        "env_names": sorted(inputs.env),
        "run": {"out_dir": str(recorded.out_dir), "devices": list(recorded.devices), "apps": list(recorded.apps),
                "pki_dir": recorded.pki_dir},
        "state": state,
    }
    write_atomic(target, json.dumps(document).encode(), mode=SECRET_MODE)


def forget_run(out_dir: Path) -> None:
    """A run that is not recorded (one device, a spec that must always run): the next one runs the full way."""
    (Path(out_dir) / STAMP_NAME).unlink(missing_ok=True)


def unchanged_run(spec_path: Path, out_dir: Path, now: dt.datetime) -> RecordedRun | None:
    """The last full run, when nothing it depended on has changed since; else None (run the full way)."""
    try:
        document = json.loads((Path(out_dir) / STAMP_NAME).read_bytes())
        if document.get("version") != STAMP_VERSION or now.timestamp() >= document["valid_until"]:
            return None
        state, run = document["state"], document["run"]
        names = document["env_names"]
        if any(name not in os.environ for name in names):
            return None
        current = _state(Path(spec_path).resolve(), Path(out_dir).resolve(), Path(state["pki"]),
                         _env_digest({name: os.environ[name] for name in names}), state["out_files"])
        if current != state or _digests(document["contents"]) != document["contents"]:
            return None
        return RecordedRun(out_dir=Path(run["out_dir"]), devices=tuple(run["devices"]), apps=tuple(run["apps"]),
                           pki_dir=run["pki_dir"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def pki_snapshot(pki_dir: Path) -> dict[str, object]:
    """The PKI's files as a run has read them (after what it issued itself)."""
    return _tree(Path(pki_dir).resolve(), [])


def input_snapshot(spec_path: Path, out_dir: Path) -> dict[str, object]:
    """The files below the spec's folder as a run starts (OUT aside): `record_generate` compares them at its end."""
    return _tree(Path(spec_path).resolve().parent, [Path(out_dir).resolve()])


def record_generate(spec: "Spec", env_names: Iterable[str], result: "GeneratedOutput", apps: tuple[str, ...],
                    *, whole_fleet: bool, before: Mapping[str, object]) -> None:
    """After `gen generate`: the stamp of a whole-fleet run of a spec that may take the short way; none when a file
    below the spec's folder changed while it ran, other than what gen wrote there itself (a starter app), or the PKI
    changed after the run read it (another `gen pki` command, or keys this run made while rendering): what was
    read might not be what is there now."""
    from generator.output.layout import firmware_dir
    from generator.pki.ca import clock_acts_at
    from generator.pki.layout import PkiLayout

    out_dir = Path(result.out_dir).resolve()
    after = input_snapshot(spec.path, out_dir)
    if (not whole_fleet or not may_take_short_way(spec) or _edited_while_running(spec, before, after, apps)
            or result.pki_state is None or pki_snapshot(spec.pki.dir) != result.pki_state):
        forget_run(result.out_dir)
        return
    now = dt.datetime.now(dt.timezone.utc)
    inputs = RunInputs(spec_path=spec.path, out_dir=result.out_dir, pki_dir=spec.pki.dir,
                       env={name: os.environ.get(name, "") for name in env_names}, generated=result.files,
                       links=tuple(firmware_dir(device.id) for device in spec.devices),
                       valid_until=clock_acts_at(PkiLayout(spec.pki.dir)))
    record_run(inputs, RecordedRun(result.out_dir, result.devices, apps, str(spec.pki.dir)), now, after)


def _edited_while_running(spec: "Spec", before: Mapping[str, object], after: Mapping[str, object],
                          apps: tuple[str, ...]) -> bool:
    pki = str(Path(spec.pki.dir).resolve())
    gens = {str(Path(app).resolve()) for app in apps} | {str(Path(app).resolve().parent) for app in apps}
    for path in before.keys() | after.keys():
        if before.get(path) != after.get(path) and path not in gens and not (path + "/").startswith(pki + "/"):
            return True
    return False


def may_take_short_way(spec: "Spec") -> bool:
    """Whether a spec's inputs are all below its folder and its PKI, and none moves with the clock alone: no device
    makes its own key, the broker's trust is the PKI's, no library is a folder of the user's elsewhere."""
    broker = spec.broker
    if any(device.makes_own_key for device in spec.devices) or not broker.issues_cert or broker.cert_file is not None:
        return False
    return all(library.path is None or library.path.is_relative_to(spec.directory)
               for device in spec.devices for library in device.libraries)
