"""Provisioning in the field: devices that make their own key (spec `pki.key_origin: device`) get their
certificate by a CSR over MQTT, and rotate it without a cable.

    protocol  topics, wire format and limits (both ends read it)
    policy    what the service decides for a request: pure functions of the request and the PKI's state
    service   `gen provision serve SPEC`: the long-running process beside the broker that signs, confirms, revokes
"""
