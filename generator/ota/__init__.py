"""Firmware updates over the air: signed images, fetched by each device over mutual TLS, announced over MQTT.

    version     the firmware version a spec builds (firmware.version, else the project's git describe)
    image       the ESP-IDF app image format: header, chip ids, app description, packing an image from segments
    signing     the project's signing key (pki/private/), espsecure's Secure Boot V2 signatures, verification
    announce    what `gen ota publish` tells a device (topic, JSON) and publishing it as the backend
    nodes       which broker addresses gen publishes retained messages on and reads them from (every cluster node)
    serve       `gen ota serve`: HTTPS with the broker's certificate, client certificates required, CRL honoured
    status      `gen ota status`: each device's running version and last update state, from retained messages

The firmware's side (the update handler, rollback) is gen_link's ota_update.* (gen_link/), built with the facts
generator.firmware renders.
"""
