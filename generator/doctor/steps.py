"""`gen doctor`: walk one device's path to the broker, step by step, with the device's own credentials, and name the
first broken link with the one thing to do about it.

    steps = run_doctor(spec, device, DoctorTarget.for_device(spec, device, broker_override="127.0.0.1:18883"))

Steps, in the order a device meets them (STEPS): the spec and PKI agree; the broker name resolves; TCP connects;
the TLS handshake succeeds as mbedTLS 2.28 (the ESP32) and as OpenSSL do it; the broker accepts the client cert;
MQTT CONNECT is accepted; the ACL lets the device publish and receive, proven by a round trip with the doctor's
own server-side identity (DOCTOR_IDENTITY, never your backend's). The run stops at the first failure; later steps
are reported as skipped.

The broker binds each client id to the authenticated user name (use_username_as_clientid), so connecting as the
device would disconnect the device itself. Before it does, the doctor reads the device's retained status topic:
if the device says it is online, its own connection is the proof, and it is left alone (`take_over=True`, the
CLI's --take-over, probes anyway: the device is disconnected once and reconnects).

Layout: `load_material` reads the PKI (read-only: no issuing, no CRL re-signing, no password creation); the
`judge_*`/`check_*` functions are pure (material + probe outcomes + clock -> StepResult); the `run_*_step`
functions do the network I/O through `generator.doctor.probes` and `generator.core.mqtt_wire`.

Nothing here writes a file outside a private temporary directory, publishes a retained message, or prints a
secret: messages name certificates by subject, serial and dates, and passwords only by the file that holds them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any, Callable

from generator.core.errors import UserError
from generator.doctor.material import DoctorMaterial, DoctorTarget, load_material
from generator.doctor.mqtt_steps import judge_presence, run_acl_step, run_mqtt_connect_step, run_presence_probe
from generator.doctor.pki_check import check_pki
from generator.doctor.results import STEPS, StepResult, failed, skipped
from generator.doctor.tls_steps import run_client_cert_step, run_resolve_step, run_tcp_step, run_tls_step
from generator.spec.model import Device, Spec


def run_doctor(spec: Spec, target: DoctorTarget, *, now: dt.datetime | None = None, spec_label: str | None = None,
               material_loader: Callable[[Spec, Device], DoctorMaterial] = load_material,
               take_over: bool = False) -> list[StepResult]:
    """Every step in order; the first failure ends the walk and the rest are reported as skipped. Fixes name the
    spec as `spec_label` (what the user typed; default: the spec's path). A device that says it is online is not
    probed as itself unless `take_over` (see the module docstring)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    results: list[StepResult] = []
    material: DoctorMaterial | None = None
    try:
        material = material_loader(spec, target.device)
    except UserError as error:
        results.append(failed("pki", f"the PKI cannot be read: {error.message}",
                              error.hint or "run `gen generate SPEC` first"))
    if material is not None:
        results.append(check_pki(spec, target, material, now))
        step_functions: list[Callable[[], StepResult]] = [
            lambda: run_resolve_step(target),
            lambda: run_tcp_step(target),
            lambda: run_tls_step(target, material, now),  # type: ignore[arg-type]
            lambda: run_client_cert_step(target, material, now),  # type: ignore[arg-type]
        ]
        for step_function in step_functions[:3] if material.device_key_on_device else step_functions:
            if not results[-1].ok:
                break
            results.append(step_function())
        if results[-1].ok and material.device_key_on_device:
            results += [StepResult(step, None, "not probed as the device: its key lives only on the device "
                                   "(key_origin: device); its own log shows whether it connects")
                        for step in ("client-cert", "mqtt-connect", "acl")]
        elif results[-1].ok:
            online = [] if take_over else judge_presence(target, run_presence_probe(target, material))
            results += online
            for step_function in (() if online
                                  else (lambda: run_mqtt_connect_step(target, material),  # type: ignore[arg-type]
                                        lambda: run_acl_step(target, material))):  # type: ignore[arg-type]
                if not results[-1].ok:
                    break
                results.append(step_function())
    done = {result.step for result in results}
    results += [skipped(step) for step, _ in STEPS if step not in done]
    label = spec_label or str(spec.path)
    return [replace(r, fix=r.fix.replace("SPEC", label)) if r.fix else r for r in results]


def select_device(spec: Spec, device_id: str | None) -> Device:
    if device_id is not None:
        return spec.device(device_id)
    if len(spec.devices) == 1:
        return spec.devices[0]
    raise UserError(f"{spec.path} has {len(spec.devices)} devices; say which one to check",
                    hint=f"add --device ID, one of: {', '.join(d.id for d in spec.devices)}")


def report_json(target: DoctorTarget, results: list[StepResult]) -> dict[str, Any]:
    return {
        "device": target.device.id,
        "server_name": target.server_name,
        "dial": f"{target.dial_host}:{target.dial_port}",
        "ok": all(result.ok for result in results),
        "steps": [result.to_json() for result in results],
    }

