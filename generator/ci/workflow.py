"""`gen ci github`: a GitHub Actions workflow that builds a spec's fleet and uploads each device's artifacts.

    path = write_github_workflow(spec, repo_root)     # <repo>/.github/workflows/<project>-firmware.yml

CI never holds a CA key and never opens the PKI (`gen build --without-pki`, generator.ci.credentials):
- `secrets: nvs` devices: CI builds app images that hold no secret at all (no secrets.yaml, no credentials); each
  device's nvs.bin is made where the PKI lives (`gen generate`, `gen flash`).
- `secrets: embed` devices: CI gets secrets.yaml's values and a bundle of exactly those devices' credentials (one
  GitHub secret, checked against GitHub's 48 KB limit); their firmware images then hold secrets, and the workflow
  says so. A device missing from the bundle fails the build: CI issues nothing.
The workflow file holds no secret value: everything comes from `${{ secrets.NAME }}`; `${VAR}` references of the
spec are passed from secrets of the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from generator.ci.credentials import check_secret_size, credentials_bundle, embedded_devices, encode_bundle
from generator.core.errors import UserError
from generator.core.files import write_atomic
from generator.core.paths import PROJECT_ROOT
from generator.core.rendering import render_template

WORKFLOWS_DIR = Path(".github") / "workflows"
PYTHON_VERSION = "3.11"
PACKAGE_NAME = "esp32-mqtt-gen"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class CiSecret:
    name: str            # the key in secrets.yaml, or the environment variable
    ci_secret: str       # the GitHub secret that holds its value
    description: str

    @property
    def expression(self) -> str:
        return "${{ secrets.%s }}" % self.ci_secret


def github_secret_name(name: str) -> str:
    """A GitHub secret name for a secrets.yaml key: upper case, letters, digits and '_' only."""
    converted = re.sub(r"[^A-Z0-9_]", "_", name.upper())
    if converted[:1].isdigit() or converted.startswith("GITHUB_"):
        converted = "GEN_" + converted
    return converted


def spec_references(spec_path: Path) -> tuple[list[str], list[str]]:
    """The `!secret` names and `${VAR}` names a spec uses, in order of appearance."""
    class Loader(yaml.SafeLoader):
        pass

    secrets: list[str] = []
    variables: list[str] = []
    root = yaml.compose(Path(spec_path).read_text(encoding="utf-8"), Loader=Loader)
    pending = [root] if root is not None else []
    while pending:
        node = pending.pop(0)
        if isinstance(node, yaml.MappingNode):
            pending[:0] = [item for pair in node.value for item in pair]
        elif isinstance(node, yaml.SequenceNode):
            pending[:0] = list(node.value)
        elif node.tag == "!secret" and node.value not in secrets:
            secrets.append(node.value)
        else:
            variables += [v for v in _ENV_REFERENCE.findall(str(node.value)) if v not in variables]
    return secrets, variables


def find_repo_root(start: Path) -> Path:
    """The git work tree holding `start` (where .github/ belongs), else `start` itself."""
    start = Path(start).resolve()
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start


def _posix_relative(path: Path, root: Path) -> str:
    try:
        return Path(os.path.relpath(Path(path).resolve(), root)).as_posix()
    except ValueError:
        raise UserError(f"{path} is not inside {root}", hint="pass --repo the repository that holds the spec") from None


def _install_command(repo_root: Path) -> str:
    if Path(repo_root).resolve() == PROJECT_ROOT.resolve():
        return "pip install ."
    try:
        return f"pip install {PACKAGE_NAME}=={version(PACKAGE_NAME)}"
    except PackageNotFoundError:
        return f"pip install {PACKAGE_NAME}"


@dataclass(frozen=True)
class CiSecrets:
    credentials: CiSecret | None      # the embed devices' credentials bundle (None when every device uses nvs)
    secrets_yaml: tuple[CiSecret, ...]
    environment: tuple[CiSecret, ...]

    @property
    def all(self) -> tuple[CiSecret, ...]:
        return (*((self.credentials,) if self.credentials else ()), *self.secrets_yaml, *self.environment)


def bundle_file(spec, out_dir: Path | None = None) -> Path:
    """Where `gen ci github` writes the credentials bundle: OUT/ci/, 0600 in 0700 (to be set as the secret)."""
    return Path(out_dir or spec.default_out_dir) / "ci" / f"{spec.project}-device-credentials.b64"


def ci_secrets(spec, spec_dir: str, out_dir: Path | None = None, repo_root: Path | None = None) -> CiSecrets:
    """Every GitHub secret the workflow reads, with what the user puts in it. All-nvs fleets read none from
    secrets.yaml: their images hold no secret. With `repo_root`, paths are said relative to it (what the committed
    workflow may hold: never a path of this machine)."""
    secret_names, variables = spec_references(spec.path)
    embedded = embedded_devices(spec)
    credentials = None
    if embedded:
        name = github_secret_name(f"{spec.project}_DEVICE_CREDENTIALS")
        bundle = bundle_file(spec, out_dir)
        shown = _posix_relative(bundle, repo_root) if repo_root is not None else str(bundle)
        credentials = CiSecret("credentials", name, f"the credentials of the {len(embedded)} secrets: embed "
                               f"device(s), no CA key: gh secret set {name} < {shown}")
    secrets = CiSecrets(
        credentials=credentials,
        secrets_yaml=tuple(CiSecret(name, github_secret_name(name), f"the value of `{name}` in secrets.yaml")
                           for name in secret_names) if embedded else (),
        environment=tuple(CiSecret(name, github_secret_name(name), f"the value of the environment variable ${{{name}}}")
                          for name in variables),
    )
    taken: dict[str, str] = {}
    for secret in secrets.all:
        if taken.setdefault(secret.ci_secret, secret.name) != secret.name:
            raise UserError(f"`{taken[secret.ci_secret]}` and `{secret.name}` would both be the GitHub secret "
                            f"{secret.ci_secret}", hint="rename one of them in the spec or secrets.yaml")
    return secrets


def render_github_workflow(spec, repo_root: Path, out_dir: Path | None = None,
                           install_command: str | None = None) -> tuple[str, str]:
    """(the workflow's path relative to the repository, its text)."""
    repo_root = Path(repo_root).resolve()
    spec_dir = _posix_relative(spec.directory, repo_root)
    out = _posix_relative(out_dir or spec.default_out_dir, repo_root)
    workflow_file = (WORKFLOWS_DIR / f"{spec.project}-firmware.yml").as_posix()
    secrets = ci_secrets(spec, spec_dir, out_dir, repo_root)
    embedded = {device.id for device in embedded_devices(spec)}
    pins = sorted({f"{d.target.platform} {d.target.option('lib_deps', '')}" for d in spec.devices})
    pins_hash = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:16]
    text = render_template(
        "ci/github-workflow.yml.j2",
        project=spec.project,
        workflow_file=workflow_file,
        spec_path=_posix_relative(spec.path, repo_root),
        spec_dir=spec_dir,
        secrets_file=f"{spec_dir}/secrets.yaml",
        out_dir=out,
        python_version=PYTHON_VERSION,
        cache_key="platformio-${{ runner.os }}-" + pins_hash,
        cache_restore_key="platformio-${{ runner.os }}-",
        install_command=install_command or _install_command(repo_root),
        credentials_secret=secrets.credentials,
        secrets=secrets.all,
        secrets_yaml=secrets.secrets_yaml,
        secrets_yaml_names=json.dumps({s.name: s.ci_secret for s in secrets.secrets_yaml}),
        environment=secrets.environment,
        devices=[{"id": d.id, "artifact": f"{spec.project}-{d.id}", "path": f"{out}/artifacts/{d.id}/",
                  "embeds_secrets": d.id in embedded} for d in spec.devices],
        embedded=[d.id for d in spec.devices if d.id in embedded],
        nvs_devices=[d.id for d in spec.devices if d.id not in embedded],
        ota_devices=[d.id for d in spec.devices if d.ota is not None],
    )
    return workflow_file, text


def write_github_workflow(spec, repo_root: Path | None = None, out_dir: Path | None = None,
                          install_command: str | None = None) -> tuple[Path, CiSecrets, Path | None]:
    """Writes the workflow and, when devices embed their secrets, their credentials bundle (OUT/ci/, 0600); returns
    the workflow's path, the secrets the user must set, and the bundle's path. A bundle over GitHub's limit is an
    error before anything is written."""
    root = find_repo_root(spec.directory) if repo_root is None else Path(repo_root).resolve()
    relative, text = render_github_workflow(spec, root, out_dir, install_command)
    secrets = ci_secrets(spec, _posix_relative(spec.directory, root), out_dir)
    bundle_path = None
    if secrets.credentials is not None:
        encoded = encode_bundle(credentials_bundle(spec))
        check_secret_size(spec, encoded, secrets.credentials.ci_secret)
        bundle_path = bundle_file(spec, out_dir)
        _make_private_dir(bundle_path.parent)
        write_atomic(bundle_path, encoded.encode(), mode=0o600)
    path = root / relative
    write_atomic(path, text.encode())
    return path, secrets, bundle_path


def _make_private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
