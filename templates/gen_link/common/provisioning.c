// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// See provisioning.h. The state, in NVS partition PROVISION_PARTITION (namespace PROVISION_NAMESPACE):
//
//   slot  u8     the active slot (0 or 1); absent: no identity yet, so the bootstrap login
//   key0/key1    blob: the private key of each slot (PEM + NUL); crt0/crt1: its chain; ser0/ser1: its serial;
//   rnw0/rnw1    i64: when to renew it (unix seconds)
//   pend  u8     the slot a rotation prepares; preq: its request id (hex)
//   try   u8     the pending slot has its certificate and waits for a trial connect
//   unconf u8    the active slot is not confirmed to the service yet
//   ca0/ca1      blob: a trust bundle the service sent; caslot u8: the one in use (absent: the firmware's);
//   catry u8     the trust slot tried with the pending certificate
//
// One NVS key is written atomically; several are not. So every step writes its data first and then one small key
// that commits it (pend, try, slot), and a power loss between any two writes leaves a device that connects with
// what it had: the service revokes a certificate only after the device has durably switched away from it.
#include "gen_config.h"

#if GEN_LINK_OWN_KEY   // compiled only for a device that makes its own key

#include "provisioning.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device_key.h"
#include "esp_err.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "retry_timing.h"
#include "sdkconfig.h"

#define SLOTS 2
#define REQUEST_ID_DIGITS PROVISION_REQUEST_ID_DIGITS
#define SERIAL_CAPACITY 44                 // 20 bytes in hex, and a NUL
#define RESEND_FIRST_MS 10000u             // a request unanswered after this is sent again, then backs off ...
#define RESEND_CAP_MS 600000u              // ... up to ten minutes
#define TRIAL_ATTEMPTS 3                   // a new certificate refused this often is given up
#define RETRY_ROTATION_MS 3600000u         // and the next rotation waits an hour
#define RETRY_AFTER_CAP_S 3600L            // a service's retry-after is honoured up to an hour: a forged one cannot park the device
#define UTC_TEXT_SIZE sizeof "2027-02-01T12:00:00Z"

// A moment as the log says it: 2027-02-01T12:00:00Z.
static const char *utc_text(int64_t seconds, char text[UTC_TEXT_SIZE])
{
    const time_t moment = (time_t)seconds;
    struct tm utc;
    if (gmtime_r(&moment, &utc) == NULL || strftime(text, UTC_TEXT_SIZE, "%Y-%m-%dT%H:%M:%SZ", &utc) == 0) {
        snprintf(text, UTC_TEXT_SIZE, "%" PRId64, seconds);
    }
    return text;
}

static provisioning_settings_t settings;
static nvs_handle_t nvs;

static struct {
    int active;                            // -1: no identity yet
    int pending;                           // -1: no rotation in progress
    bool trial;
    bool unconfirmed;
    int trust_slot;                        // -1: the firmware's trust bundle
    int trust_trial;                       // -1: no new trust bundle to try
    char request[REQUEST_ID_DIGITS + 1];
    const char *reason;
    char *key[SLOTS];
    char *chain[SLOTS];
    char *trust[SLOTS];
    char serial[SLOTS][SERIAL_CAPACITY];
    int64_t renew_at[SLOTS];
    unsigned trial_failures;
    bool send_due;
    uint32_t next_send_ms;
    uint32_t resend_ms;
    bool rotation_held;                    // after a given-up trial: no rotation before rotation_after_ms
    uint32_t rotation_after_ms;
    bool switch_credential;
    credential_t credential;
    char username[64];
    char topics[4][PROVISION_TOPIC_CAPACITY];        // bootstrap request, response; operational request, response
} state;

static void log_line(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *format, ...)
{
    char line[224] = "[cred] ";
    va_list args;
    va_start(args, format);
    vsnprintf(line + 7, sizeof line - 7, format, args);
    va_end(args);
    settings.log(line);
}

// ---- NVS ----------------------------------------------------------------------------------------------------

static void slot_key(char *out, const char *name, int slot)
{
    snprintf(out, 16, "%s%d", name, slot);
}

static char *read_text(const char *key)
{
    size_t size = 0;
    if (nvs_get_blob(nvs, key, NULL, &size) != ESP_OK || size == 0) {
        return NULL;
    }
    char *text = malloc(size);
    if (text == NULL || nvs_get_blob(nvs, key, text, &size) != ESP_OK || text[size - 1] != '\0') {
        free(text);
        return NULL;
    }
    return text;
}

static int read_u8(const char *key)
{
    uint8_t value = 0;
    return nvs_get_u8(nvs, key, &value) == ESP_OK ? value : -1;
}

static bool checked(esp_err_t err, const char *what, const char *key)
{
    if (err != ESP_OK) {
        log_line("cannot %s \"%s\" in NVS: %s", what, key, esp_err_to_name(err));
        return false;
    }
    return true;
}

// nvs_commit is part of the API; on the device every nvs_set_* is on flash when it returns.
static bool write_text(const char *key, const char *text)
{
    return checked(nvs_set_blob(nvs, key, text, strlen(text) + 1), "write", key) &&
           checked(nvs_commit(nvs), "commit", key);
}

static bool write_u8(const char *key, uint8_t value)
{
    return checked(nvs_set_u8(nvs, key, value), "write", key) && checked(nvs_commit(nvs), "commit", key);
}

static bool write_i64(const char *key, int64_t value)
{
    return checked(nvs_set_i64(nvs, key, value), "write", key) && checked(nvs_commit(nvs), "commit", key);
}

static void erase(const char *key)
{
    const esp_err_t err = nvs_erase_key(nvs, key);
    if (err != ESP_ERR_NVS_NOT_FOUND) {
        checked(err, "erase", key);
        nvs_commit(nvs);
    }
}

static void set_text(char **slot, char *text)
{
    free(*slot);
    *slot = text;
}

static char *copy_text(const char *data, size_t length)
{
    char *text = malloc(length + 1);
    if (text != NULL) {
        memcpy(text, data, length);
        text[length] = '\0';
    }
    return text;
}

static void clear_slot(int slot)
{
    char key[16];
    static const char *const names[] = {"crt", "key", "ser", "rnw"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i) {
        slot_key(key, names[i], slot);
        erase(key);
    }
    set_text(&state.key[slot], NULL);
    set_text(&state.chain[slot], NULL);
    state.serial[slot][0] = '\0';
    state.renew_at[slot] = 0;
}

// ---- The credential -----------------------------------------------------------------------------------------

static const char *trust_bundle(void)
{
    if (state.trial && state.trust_trial >= 0 && state.trust[state.trust_trial] != NULL) {
        return state.trust[state.trust_trial];
    }
    if (state.trust_slot >= 0 && state.trust[state.trust_slot] != NULL) {
        return state.trust[state.trust_slot];
    }
    return settings.ca_pem;
}

const credential_t *provisioning_credential(void)
{
    credential_t *c = &state.credential;
    c->ca_pem = trust_bundle();
    if (state.trial || state.active >= 0) {
        const int slot = state.trial ? state.pending : state.active;
        c->kind = state.trial ? CREDENTIAL_TRIAL : CREDENTIAL_ACTIVE;
        c->port = settings.port;
        c->username = NULL;
        c->password = NULL;
        c->cert_pem = state.chain[slot];
        c->key_pem = state.key[slot];
        c->request_topic = state.topics[2];
        c->response_topic = state.topics[3];
    } else {
        c->kind = CREDENTIAL_BOOTSTRAP;
        c->port = settings.provision_port;
        c->username = state.username;
        c->password = settings.bootstrap_password;
        c->cert_pem = NULL;
        c->key_pem = NULL;
        c->request_topic = state.topics[0];
        c->response_topic = state.topics[1];
    }
    return c;
}

bool provisioning_switch_credential(void)
{
    const bool change = state.switch_credential;
    state.switch_credential = false;
    return change;
}

// ---- Start ----------------------------------------------------------------------------------------------------

static void load_slot(int slot)
{
    char key[16];
    slot_key(key, "key", slot);
    state.key[slot] = read_text(key);
    slot_key(key, "crt", slot);
    state.chain[slot] = read_text(key);
    slot_key(key, "ca", slot);
    state.trust[slot] = read_text(key);
    slot_key(key, "ser", slot);
    size_t size = sizeof state.serial[slot];
    if (nvs_get_str(nvs, key, state.serial[slot], &size) != ESP_OK) {
        state.serial[slot][0] = '\0';
    }
    slot_key(key, "rnw", slot);
    if (nvs_get_i64(nvs, key, &state.renew_at[slot]) != ESP_OK) {
        state.renew_at[slot] = 0;
    }
}

// With NVS encryption (CONFIG_NVS_ENCRYPTION) the partition is encrypted with the XTS-AES keys of the security
// scheme the default partition uses, read as nvs_flash_init() reads them (esp-idf v5.5.3
// components/nvs_flash/src/nvs_api.cpp:136-163); nvs_flash_init() ran first and made them on a first boot.
static esp_err_t init_partition(void)
{
#ifdef CONFIG_NVS_ENCRYPTION
    nvs_sec_cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    esp_err_t err = nvs_flash_read_security_cfg_v2(nvs_flash_get_default_security_scheme(), &cfg);
    if (err != ESP_OK) {
        log_line("cannot read the NVS encryption keys for partition %s: %s", PROVISION_PARTITION,
                 esp_err_to_name(err));
        return err;
    }
    err = nvs_flash_secure_init_partition(PROVISION_PARTITION, &cfg);
    memset(&cfg, 0, sizeof cfg);
    return err;
#else
    return nvs_flash_init_partition(PROVISION_PARTITION);
#endif
}

bool provisioning_begin(const provisioning_settings_t *given)
{
    settings = *given;
    esp_err_t err = init_partition();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        // Unreadable: start it again. The identity is lost; `gen provision allow` lets the device provision anew.
        log_line("partition %s is unreadable (%s): erasing it; this device has no identity now",
                 PROVISION_PARTITION, esp_err_to_name(err));
        nvs_flash_erase_partition(PROVISION_PARTITION);
        err = init_partition();
    }
    if (err == ESP_OK) {
        err = nvs_open_from_partition(PROVISION_PARTITION, PROVISION_NAMESPACE, NVS_READWRITE, &nvs);
    }
    if (err != ESP_OK) {
        log_line("cannot open NVS partition %s: %s (is it in the partition table?)", PROVISION_PARTITION,
                 esp_err_to_name(err));
        return false;
    }
    snprintf(state.username, sizeof state.username, "%s" PROVISION_BOOTSTRAP_SUFFIX, settings.device_id);
    snprintf(state.topics[0], PROVISION_TOPIC_CAPACITY, PROVISION_BOOTSTRAP_REQUEST_FORMAT, settings.device_id);
    snprintf(state.topics[1], PROVISION_TOPIC_CAPACITY, PROVISION_BOOTSTRAP_RESPONSE_FORMAT, settings.device_id);
    snprintf(state.topics[2], PROVISION_TOPIC_CAPACITY, PROVISION_REQUEST_FORMAT, settings.device_id);
    snprintf(state.topics[3], PROVISION_TOPIC_CAPACITY, PROVISION_RESPONSE_FORMAT, settings.device_id);
    for (int slot = 0; slot < SLOTS; ++slot) {
        load_slot(slot);
    }
    state.active = read_u8("slot");
    state.pending = read_u8("pend");
    state.trial = read_u8("try") == 1;
    state.unconfirmed = read_u8("unconf") == 1;
    state.trust_slot = read_u8("caslot");
    state.trust_trial = read_u8("catry");
    size_t size = sizeof state.request;
    if (nvs_get_str(nvs, "preq", state.request, &size) != ESP_OK) {
        state.request[0] = '\0';
    }
    if (state.active >= SLOTS || (state.active >= 0 && (state.key[state.active] == NULL ||
                                                        state.chain[state.active] == NULL))) {
        log_line("slot %d is incomplete: connecting as a device without an identity", state.active);
        state.active = -1;
    }
    if (state.pending >= SLOTS || (state.pending >= 0 && (state.key[state.pending] == NULL ||
                                                          state.request[0] == '\0'))) {
        erase("try");
        erase("pend");
        state.pending = -1;
    }
    if (state.trial && (state.pending < 0 || state.chain[state.pending] == NULL)) {
        erase("try");
        state.trial = false;
    }
    if (!state.trial && state.trust_trial >= 0) {
        erase("catry");
        state.trust_trial = -1;
    }
    state.reason = "retry";
    if (state.active >= 0 && state.pending < 0 && !state.unconfirmed) {
        const int other = 1 - state.active;
        if (state.key[other] != NULL || state.chain[other] != NULL) {
            clear_slot(other);                 // a rotation finished before its old slot was cleared
        }
    }
    if (state.trial) {
        log_line("rotation in progress: trying the certificate in slot %d (serial %s)", state.pending,
                 state.serial[state.pending]);
    } else if (state.pending >= 0) {
        log_line("rotation in progress: the key in slot %d waits for its certificate (request %s)", state.pending,
                 state.request);
    }
    if (state.active >= 0) {
        char renew_at[UTC_TEXT_SIZE];
        log_line("identity: slot %d, certificate %s%s, renews from %s", state.active,
                 state.serial[state.active], state.unconfirmed ? " (not confirmed yet)" : "",
                 utc_text(state.renew_at[state.active], renew_at));
    } else {
        log_line("no identity yet: first boot over the bootstrap listener as %s", state.username);
    }
    if (state.trust_slot >= 0 && state.trust[state.trust_slot] != NULL) {
        log_line("trust anchors from slot %d (sent by the provisioning service)", state.trust_slot);
    }
    state.resend_ms = RESEND_FIRST_MS;
    return true;
}

// ---- Steps --------------------------------------------------------------------------------------------------

static bool ready_to_sign(void)
{
    char personalisation[64];
    snprintf(personalisation, sizeof personalisation, "gen-cred %s", settings.device_id);
    const int err = device_key_seed(personalisation);
    if (err != 0) {
        log_line("the random generator does not start: -0x%04x", (unsigned)-err);
    }
    return err == 0;
}

// Step 1: a fresh key in the other slot; writing `pend` commits "a rotation is in progress".
static void start_rotation(const char *reason)
{
    if (!ready_to_sign()) {
        return;
    }
    const int slot = state.active < 0 ? 0 : 1 - state.active;
    char key_pem[DEVICE_KEY_PEM_CAPACITY];
    char request[REQUEST_ID_DIGITS + 1];
    int err = device_key_generate(key_pem, sizeof key_pem);
    if (err == 0) {
        err = device_key_random_hex(request, REQUEST_ID_DIGITS);
    }
    if (err != 0) {
        log_line("cannot make a key: -0x%04x", (unsigned)-err);
        return;
    }
    clear_slot(slot);
    char key[16];
    slot_key(key, "key", slot);
    const bool written = write_text(key, key_pem) &&
                         checked(nvs_set_str(nvs, "preq", request), "write", "preq") && write_u8("pend", (uint8_t)slot);
    char *copy = copy_text(key_pem, strlen(key_pem));
    memset(key_pem, 0, sizeof key_pem);
    if (!written || copy == NULL) {
        free(copy);
        return;
    }
    set_text(&state.key[slot], copy);
    memcpy(state.request, request, sizeof request);
    state.pending = slot;
    state.reason = reason;
    state.send_due = true;
    state.resend_ms = RESEND_FIRST_MS;
    log_line("step 1: new key in slot %d (%s)", slot, reason);
}

// Step 3: the certificate for the pending key; writing `try` commits it, and the next connect tries it.
static void store_certificate(const char *serial, int64_t renew_at, char *chain, char *trust)
{
    const int slot = state.pending;
    const int matches = device_key_matches_certificate(state.key[slot], chain);
    if (matches != 1) {
        log_line("a certificate for request %s does not certify the pending key (%d); ignored", state.request,
                 matches);
        free(chain);
        free(trust);
        return;
    }
    char key[16];
    slot_key(key, "crt", slot);
    bool ok = write_text(key, chain);
    slot_key(key, "ser", slot);
    ok = ok && checked(nvs_set_str(nvs, key, serial), "write", key);
    slot_key(key, "rnw", slot);
    ok = ok && write_i64(key, renew_at);
    int trust_slot = -1;
    if (ok && trust != NULL) {
        trust_slot = state.trust_slot < 0 ? 0 : 1 - state.trust_slot;
        slot_key(key, "ca", trust_slot);
        ok = write_text(key, trust) && write_u8("catry", (uint8_t)trust_slot);
    }
    if (!ok || !write_u8("try", 1)) {
        free(chain);
        free(trust);
        return;
    }
    set_text(&state.chain[slot], chain);
    if (trust_slot >= 0) {
        set_text(&state.trust[trust_slot], trust);
        state.trust_trial = trust_slot;
    } else {
        free(trust);
    }
    snprintf(state.serial[slot], SERIAL_CAPACITY, "%s", serial);
    state.renew_at[slot] = renew_at;
    state.trial = true;
    state.trial_failures = 0;
    state.switch_credential = true;
    log_line("step 3: certificate %s stored in slot %d%s; trying it", serial, slot,
             trust_slot >= 0 ? " with new trust anchors" : "");
}

// Step 4: the trial connect worked; writing `slot` commits the switch. The old certificate stays valid until
// the service has the confirmation (step 5).
static void commit_trial(void)
{
    const int slot = state.pending;
    if (!write_u8("unconf", 1) || !write_u8("slot", (uint8_t)slot)) {
        return;
    }
    if (state.trust_trial >= 0 && write_u8("caslot", (uint8_t)state.trust_trial)) {
        state.trust_slot = state.trust_trial;
    }
    erase("catry");
    erase("try");
    erase("pend");
    erase("preq");
    state.active = slot;
    state.pending = -1;
    state.trial = false;
    state.trust_trial = -1;
    state.unconfirmed = true;
    state.send_due = true;
    state.resend_ms = RESEND_FIRST_MS;
    log_line("step 4: certificate %s in slot %d connects: it is this device's identity now", state.serial[slot],
             slot);
}

static void give_up_trial(uint32_t now_ms)
{
    log_line("certificate %s in slot %d was refused %u times: back to %s", state.serial[state.pending],
             state.pending, state.trial_failures, state.active >= 0 ? "the active slot" : "the bootstrap login");
    erase("try");
    erase("catry");
    erase("pend");
    erase("preq");
    state.trial = false;
    state.trust_trial = -1;
    state.pending = -1;
    state.trial_failures = 0;
    state.rotation_held = true;
    state.rotation_after_ms = now_ms + RETRY_ROTATION_MS;
    state.switch_credential = true;
}

void provisioning_connected(uint32_t now_ms)
{
    if (state.trial) {
        commit_trial();
    } else if (state.active < 0 && state.pending < 0
               && (!state.rotation_held || retry_due(now_ms, state.rotation_after_ms))) {
        start_rotation("first-boot");
    }
    if (state.pending >= 0 || state.unconfirmed) {
        state.send_due = true;
    }
}

void provisioning_connect_failed(bool refused, uint32_t now_ms)
{
    if (!state.trial || !refused) {
        return;                            // network trouble proves nothing about a certificate
    }
    state.trial_failures++;
    log_line("certificate %s in slot %d was refused (%u of %d)", state.serial[state.pending], state.pending,
             state.trial_failures, TRIAL_ATTEMPTS);
    if (state.trial_failures >= TRIAL_ATTEMPTS) {
        give_up_trial(now_ms);
    }
}

// ---- Messages -----------------------------------------------------------------------------------------------

typedef struct {
    char type[16];
    char id[40];
    char request[REQUEST_ID_DIGITS + 1];
    char serial[SERIAL_CAPACITY];
    char reason[168];
    int64_t renew_at;
    long retry_after;
    long trust_at;
    const char *body;
    size_t body_length;
} answer_t;

static void copy_field(char *out, size_t size, const char *value, size_t length)
{
    if (length >= size) {
        length = size - 1;
    }
    memcpy(out, value, length);
    out[length] = '\0';
}

static bool parse_answer(const char *payload, size_t length, answer_t *answer)
{
    memset(answer, 0, sizeof *answer);
    answer->retry_after = -1;
    answer->trust_at = -1;
    static const char first[] = "gen-provision 1\n";
    if (length < sizeof first - 1 || memcmp(payload, first, sizeof first - 1) != 0) {
        return false;
    }
    size_t at = sizeof first - 1;
    while (at < length && payload[at] != '\n') {
        const char *line = payload + at;
        const char *end = memchr(line, '\n', length - at);
        if (end == NULL) {
            return false;
        }
        const char *space = memchr(line, ' ', (size_t)(end - line));
        if (space != NULL) {
            const size_t name = (size_t)(space - line);
            const char *value = space + 1;
            const size_t value_length = (size_t)(end - value);
            char number[24];
            copy_field(number, sizeof number, value, value_length);
            if (name == 4 && memcmp(line, "type", 4) == 0) {
                copy_field(answer->type, sizeof answer->type, value, value_length);
            } else if (name == 2 && memcmp(line, "id", 2) == 0) {
                copy_field(answer->id, sizeof answer->id, value, value_length);
            } else if (name == 7 && memcmp(line, "request", 7) == 0) {
                copy_field(answer->request, sizeof answer->request, value, value_length);
            } else if (name == 6 && memcmp(line, "serial", 6) == 0) {
                copy_field(answer->serial, sizeof answer->serial, value, value_length);
            } else if (name == 6 && memcmp(line, "reason", 6) == 0) {
                copy_field(answer->reason, sizeof answer->reason, value, value_length);
            } else if (name == 8 && memcmp(line, "renew-at", 8) == 0) {
                answer->renew_at = strtoll(number, NULL, 10);
            } else if (name == 11 && memcmp(line, "retry-after", 11) == 0) {
                answer->retry_after = strtol(number, NULL, 10);
            } else if (name == 8 && memcmp(line, "trust-at", 8) == 0) {
                answer->trust_at = strtol(number, NULL, 10);
            }
        }
        at = (size_t)(end - payload) + 1;
    }
    if (at >= length) {
        answer->body = payload + length;   // a header only (an empty body)
        answer->body_length = 0;
        return true;
    }
    answer->body = payload + at + 1;
    answer->body_length = length - at - 1;
    return answer->trust_at <= (long)answer->body_length;
}

void provisioning_message(const char *payload, size_t length, uint32_t now_ms)
{
    if (length == 0) {
        return;                            // a retained answer cleared by the service
    }
    answer_t answer;
    if (!parse_answer(payload, length, &answer) || strcmp(answer.id, settings.device_id) != 0) {
        log_line("ignored a message on the response topic: not an answer for %s", settings.device_id);
        return;
    }
    const bool ours = state.pending >= 0 && strcmp(answer.request, state.request) == 0;
    if (strcmp(answer.type, "cert") == 0) {
        if (state.unconfirmed && state.active >= 0 && strcmp(answer.serial, state.serial[state.active]) == 0) {
            state.send_due = true;         // the service (back after a restart) still waits for our confirmation
            return;
        }
        if (!ours || state.trial) {
            return;                        // an earlier answer, still retained: not for the key we hold now
        }
        const size_t chain_length = answer.trust_at >= 0 ? (size_t)answer.trust_at : answer.body_length;
        char *chain = copy_text(answer.body, chain_length);
        char *trust = answer.trust_at >= 0 && chain_length < answer.body_length
                          ? copy_text(answer.body + chain_length, answer.body_length - chain_length)
                          : NULL;
        if (chain == NULL) {
            free(trust);
            log_line("out of memory for a %u-byte certificate chain", (unsigned)chain_length);
            return;
        }
        store_certificate(answer.serial, answer.renew_at, chain, trust);
    } else if (strcmp(answer.type, "refused") == 0 || strcmp(answer.type, "busy") == 0) {
        const bool refused = answer.type[0] == 'r';
        if (!ours && state.pending >= 0) {
            return;                        // an answer to an earlier request
        }
        long wait_s = answer.retry_after >= 0 ? answer.retry_after : (long)(RESEND_CAP_MS / 1000);
        if (wait_s > RETRY_AFTER_CAP_S) {
            log_line("the service asks to wait %ld s; waiting at most %ld s", wait_s, RETRY_AFTER_CAP_S);
            wait_s = RETRY_AFTER_CAP_S;
        }
        log_line("%s: %s (asking again in %ld s)", refused ? "refused" : "service busy", answer.reason, wait_s);
        state.send_due = false;
        state.next_send_ms = now_ms + (uint32_t)wait_s * 1000u;
    } else if (strcmp(answer.type, "confirmed") == 0) {
        if (state.unconfirmed && state.active >= 0 && strcmp(answer.serial, state.serial[state.active]) == 0) {
            erase("unconf");
            state.unconfirmed = false;
            clear_slot(1 - state.active);
            log_line("step 5: certificate %s confirmed; the old key and certificate are erased", answer.serial);
        }
    } else if (strcmp(answer.type, "rotate") == 0) {
        if (state.active >= 0 && state.pending < 0 && !state.unconfirmed) {
            log_line("the operator asked for a rotation");
            start_rotation("command");
        }
    }
}

// ---- Requests -----------------------------------------------------------------------------------------------

static size_t header(char *out, size_t capacity, const char *type, const char *request)
{
    char trust[65] = "";
    const char *bundle = trust_bundle();
    if (device_key_sha256_hex(bundle, strlen(bundle), trust) != 0) {
        trust[0] = '\0';
    }
    const int length = snprintf(out, capacity, "gen-provision 1\ntype %s\nid %s\nrequest %s\n%s%s%s", type,
                                settings.device_id, request, trust[0] ? "trust " : "", trust, trust[0] ? "\n" : "");
    return length > 0 && (size_t)length < capacity ? (size_t)length : 0;
}

size_t provisioning_poll(uint32_t now_ms, time_t utc, char *out, size_t capacity)
{
    const int active = state.active;
    if (active >= 0 && state.pending < 0 && !state.unconfirmed && !state.trial && utc > 0 &&
        state.renew_at[active] > 0 && (int64_t)utc >= state.renew_at[active] &&
        (!state.rotation_held || retry_due(now_ms, state.rotation_after_ms))) {
        char renew_at[UTC_TEXT_SIZE];
        log_line("certificate %s is due for renewal (renews from %s)", state.serial[active],
                 utc_text(state.renew_at[active], renew_at));
        start_rotation("expiry");
    }
    if (!state.send_due && !retry_due(now_ms, state.next_send_ms)) {
        return 0;
    }
    size_t length = 0;
    if (state.pending >= 0 && !state.trial) {
        char csr[DEVICE_CSR_PEM_CAPACITY];
        if (!ready_to_sign()) {
            return 0;
        }
        const int err = device_key_csr(state.key[state.pending], settings.device_id, csr, sizeof csr);
        if (err != 0) {
            log_line("cannot write the certificate request: -0x%04x", (unsigned)-err);
            return 0;
        }
        length = header(out, capacity, "csr", state.request);
        const int more = length ? snprintf(out + length, capacity - length, "reason %s\n\n%s", state.reason, csr) : -1;
        length = more > 0 && (size_t)more < capacity - length ? length + (size_t)more : 0;
        if (length) {
            log_line("step 2: certificate request %s sent (%s)", state.request, state.reason);
        }
    } else if (state.unconfirmed && active >= 0) {
        char request[REQUEST_ID_DIGITS + 1];
        if (!ready_to_sign() || device_key_random_hex(request, REQUEST_ID_DIGITS) != 0) {
            return 0;
        }
        length = header(out, capacity, "confirm", request);
        const int more = length ? snprintf(out + length, capacity - length, "serial %s\n\n", state.serial[active]) : -1;
        length = more > 0 && (size_t)more < capacity - length ? length + (size_t)more : 0;
        if (length) {
            log_line("confirming certificate %s", state.serial[active]);
        }
    } else {
        state.send_due = false;
        return 0;
    }
    state.send_due = false;
    state.next_send_ms = now_ms + state.resend_ms;
    state.resend_ms = state.resend_ms * 2 > RESEND_CAP_MS ? RESEND_CAP_MS : state.resend_ms * 2;
    return length;
}

#endif  // GEN_LINK_OWN_KEY
