// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// This device makes its own key and gets its certificate over MQTT (gen provision serve): first boot over the
// bootstrap listener, rotations over its own certificate, and power loss at any step still leaves a device that
// connects. The state lives in its own NVS partition, PROVISION_PARTITION, so flashing the settings never erases
// an identity. main calls these from one task only; none of them blocks on the network. Valid C and C++.
#ifndef PROVISIONING_H
#define PROVISIONING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gen_config.h"

#ifdef __cplusplus
extern "C" {
#endif

// PROVISION_PARTITION, PROVISION_NAMESPACE, PROVISION_REQUEST_MAX (bytes of a request the service accepts) and
// PROVISION_RESPONSE_MAX (bytes of an answer: leaf, CA, a new trust bundle) come from gen_config.h.

typedef enum {
    CREDENTIAL_BOOTSTRAP,   // no identity yet: the bootstrap listener, <id>@bootstrap and its password
    CREDENTIAL_ACTIVE,      // the device's own certificate
    CREDENTIAL_TRIAL,       // a new certificate, tried before it replaces the active one
} credential_kind_t;

// What to connect with now. Every pointer stays valid until the credential changes.
typedef struct {
    credential_kind_t kind;
    uint16_t port;
    const char *username;       // the bootstrap login; NULL with a certificate (the broker takes its CN)
    const char *password;
    const char *ca_pem;         // the trust bundle the broker's certificate is verified with
    const char *cert_pem;       // NULL for the bootstrap login
    const char *key_pem;
    const char *request_topic;
    const char *response_topic;
} credential_t;

typedef struct {
    const char *device_id;
    const char *bootstrap_password;
    const char *ca_pem;         // the trust bundle of the firmware (or its settings)
    uint16_t port;              // the broker's device listener
    uint16_t provision_port;    // its bootstrap listener
    void (*log)(const char *line);
} provisioning_settings_t;

// Opens the partition and reads the state (no network). False: the partition cannot be used (logged).
bool provisioning_begin(const provisioning_settings_t *settings);
const credential_t *provisioning_credential(void);
// The broker accepted provisioning_credential() (subscribe to its response topic now).
void provisioning_connected(uint32_t now_ms);
// A connect failed; `refused`: by TLS or CONNACK (not a network error).
void provisioning_connect_failed(bool refused, uint32_t now_ms);
// A message on the credential's response topic.
void provisioning_message(const char *payload, size_t length, uint32_t now_ms);
// While connected: a request to publish on the credential's request topic now (its length), or 0.
// `utc`: the synchronised clock, or 0 when there is none (no renewal by expiry without one).
size_t provisioning_poll(uint32_t now_ms, time_t utc, char *out, size_t capacity);
// True once when the credential changed: drop the connection and dial again with the new one.
bool provisioning_switch_credential(void);

#ifdef __cplusplus
}
#endif
#endif
