// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// See device_key.h. Stack use stays small: the key goes out through mbedtls_pk_write_key_der into a 160-byte
// buffer and mbedtls_pem_write_buffer (mbedTLS 2.28's mbedtls_pk_write_key_pem puts a 5.7 KB RSA-sized buffer
// on the stack), and mbedtls_x509write_csr_pem allocates its signature.
#include "gen_config.h"

#if GEN_LINK_OWN_KEY   // compiled only for a device that makes its own key

#include "device_key.h"

#include <stdio.h>
#include <string.h>

#include "mbedtls/ctr_drbg.h"
#include "mbedtls/ecp.h"
#include "mbedtls/entropy.h"
#include "mbedtls/md.h"
#include "mbedtls/pem.h"
#include "mbedtls/pk.h"
#include "mbedtls/version.h"
#include "mbedtls/x509_crt.h"
#include "mbedtls/x509_csr.h"

#define KEY_DER_CAPACITY 160           // SEC1 ECPrivateKey of P-256: 121 bytes
#define PUBLIC_DER_CAPACITY 128        // SubjectPublicKeyInfo of P-256: 91 bytes

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static bool seeded = false;

int device_key_seed(const char *personalisation)
{
    if (seeded) {
        return 0;
    }
    mbedtls_entropy_init(&entropy);  // with the hardware RNG as its strong source (MBEDTLS_ENTROPY_HARDWARE_ALT)
    mbedtls_ctr_drbg_init(&drbg);
    int err = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, (const unsigned char *)personalisation,
                                    strlen(personalisation));
    if (err != 0) {
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
        return err;
    }
    seeded = true;
    return 0;
}

// mbedtls_pk_parse_key gained the RNG (for blinding) in mbedTLS 3.0; the rest of this file is the same on both.
static int parse_key(mbedtls_pk_context *key, const char *key_pem)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    return mbedtls_pk_parse_key(key, (const unsigned char *)key_pem, strlen(key_pem) + 1, NULL, 0,
                                mbedtls_ctr_drbg_random, &drbg);
#else
    return mbedtls_pk_parse_key(key, (const unsigned char *)key_pem, strlen(key_pem) + 1, NULL, 0);
#endif
}

int device_key_generate(char *key_pem, size_t capacity)
{
    if (!seeded) {
        return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
    }
    mbedtls_pk_context key;
    mbedtls_pk_init(&key);
    unsigned char der[KEY_DER_CAPACITY];
    size_t written = 0;
    int err = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (err == 0) {
        err = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), mbedtls_ctr_drbg_random, &drbg);
    }
    int length = err == 0 ? mbedtls_pk_write_key_der(&key, der, sizeof der) : err;  // written at the END of der
    if (length > 0) {
        err = mbedtls_pem_write_buffer("-----BEGIN EC PRIVATE KEY-----\n", "-----END EC PRIVATE KEY-----\n",
                                       der + sizeof der - length, (size_t)length, (unsigned char *)key_pem,
                                       capacity, &written);
    } else {
        err = length;
    }
    memset(der, 0, sizeof der);
    mbedtls_pk_free(&key);
    return err;
}

int device_key_csr(const char *key_pem, const char *common_name, char *csr_pem, size_t capacity)
{
    char subject[80];
    if (snprintf(subject, sizeof subject, "CN=%s", common_name) >= (int)sizeof subject) {
        return MBEDTLS_ERR_X509_BAD_INPUT_DATA;
    }
    mbedtls_pk_context key;
    mbedtls_pk_init(&key);
    mbedtls_x509write_csr request;
    mbedtls_x509write_csr_init(&request);
    int err = parse_key(&key, key_pem);
    if (err == 0) {
        mbedtls_x509write_csr_set_md_alg(&request, MBEDTLS_MD_SHA256);
        mbedtls_x509write_csr_set_key(&request, &key);
        err = mbedtls_x509write_csr_set_subject_name(&request, subject);
    }
    if (err == 0) {
        err = mbedtls_x509write_csr_pem(&request, (unsigned char *)csr_pem, capacity, mbedtls_ctr_drbg_random, &drbg);
    }
    mbedtls_x509write_csr_free(&request);
    mbedtls_pk_free(&key);
    return err;
}

int device_key_matches_certificate(const char *key_pem, const char *cert_pem)
{
    mbedtls_pk_context key;
    mbedtls_pk_init(&key);
    mbedtls_x509_crt chain;
    mbedtls_x509_crt_init(&chain);
    unsigned char ours[PUBLIC_DER_CAPACITY];
    unsigned char theirs[PUBLIC_DER_CAPACITY];
    int err = parse_key(&key, key_pem);
    if (err == 0) {
        err = mbedtls_x509_crt_parse(&chain, (const unsigned char *)cert_pem, strlen(cert_pem) + 1);
    }
    int result = err;
    if (err == 0) {
        // Both written at the end of their buffers: equal lengths and equal tails mean the same public key.
        const int our_length = mbedtls_pk_write_pubkey_der(&key, ours, sizeof ours);
        const int their_length = mbedtls_pk_write_pubkey_der(&chain.pk, theirs, sizeof theirs);
        if (our_length < 0 || their_length < 0) {
            result = our_length < 0 ? our_length : their_length;
        } else {
            result = our_length == their_length &&
                     memcmp(ours + sizeof ours - our_length, theirs + sizeof theirs - their_length,
                            (size_t)our_length) == 0;
        }
    }
    mbedtls_x509_crt_free(&chain);
    mbedtls_pk_free(&key);
    return result;
}

static void to_hex(const unsigned char *bytes, size_t count, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < count; ++i) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0f];
    }
    out[2 * count] = '\0';
}

int device_key_random_hex(char *out, size_t digits)
{
    unsigned char bytes[32];
    if (digits % 2 != 0 || digits / 2 > sizeof bytes) {
        return MBEDTLS_ERR_CTR_DRBG_REQUEST_TOO_BIG;
    }
    const int err = mbedtls_ctr_drbg_random(&drbg, bytes, digits / 2);
    if (err == 0) {
        to_hex(bytes, digits / 2, out);
    }
    return err;
}

int device_key_sha256_hex(const void *data, size_t length, char out[65])
{
    unsigned char digest[32];
    const int err = mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), (const unsigned char *)data, length,
                               digest);
    if (err == 0) {
        to_hex(digest, sizeof digest, out);
    }
    return err;
}

#endif  // GEN_LINK_OWN_KEY
