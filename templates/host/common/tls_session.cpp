#include "tls_session.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "gen_sim.h"

namespace gen_host {

namespace {

int bio_send(void* ctx, const unsigned char* buf, size_t len) {
    int fd = *static_cast<int*>(ctx);
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_WRITE;
    if (errno == EPIPE || errno == ECONNRESET) return MBEDTLS_ERR_NET_CONN_RESET;
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

int bio_recv(void* ctx, unsigned char* buf, size_t len) {
    int fd = *static_cast<int*>(ctx);
    ssize_t n = recv(fd, buf, len, 0);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return MBEDTLS_ERR_SSL_WANT_READ;
    if (errno == EPIPE || errno == ECONNRESET) return MBEDTLS_ERR_NET_CONN_RESET;
    return MBEDTLS_ERR_NET_RECV_FAILED;
}

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool wait_fd(int fd, short events, int timeout_ms) {
    struct pollfd p = {fd, events, 0};
    int rc;
    do {
        rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
}

}  // namespace

std::string TransportError::text() const {
    char buf[256];
    switch (stage) {
        case NONE:
            return "";
        case RESOLVE:
            return "could not resolve " + destination + " (no DNS entry and no GEN_SIM_CONNECT_TO mapping)";
        case CONNECT:
            snprintf(buf, sizeof buf, "TCP connect to %s failed: %s", destination.c_str(), strerror(sock_errno));
            return buf;
        case HANDSHAKE_TIMEOUT:
            return "TLS handshake timed out";
        case IO:
            if (mbedtls_error == 0) {
                snprintf(buf, sizeof buf, "connection lost: %s", sock_errno ? strerror(sock_errno) : "closed by peer");
                return buf;
            }
            break;
        default:
            break;
    }
    std::string out;
    if (mbedtls_error) {
        mbedtls_strerror(mbedtls_error, buf, sizeof buf);
        char head[32];
        snprintf(head, sizeof head, "(-0x%04X) ", static_cast<unsigned>(-mbedtls_error));
        out = std::string(head) + buf;
    }
    if (verify_flags) {
        char info[512];
        int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", verify_flags);
        if (n > 0) {
            std::string v(info, static_cast<size_t>(n));
            for (auto& c : v) if (c == '\n') c = ';';
            while (!v.empty() && (v.back() == ';' || v.back() == ' ')) v.pop_back();
            out += ": " + v;
        }
    }
    return out;
}

std::string TransportError::summary() const {
    bool tls = stage == TLS_SETUP || stage == CERT_PARSE || stage == KEY_PARSE || stage == HANDSHAKE ||
               stage == HANDSHAKE_TIMEOUT || (stage == IO && mbedtls_error != 0);
    return (tls ? "TLS: " : "") + text();
}

// Every certificate of the chain passes here (mbedtls_ssl_conf_verify) before its flags count: the date flags are
// dropped when the device's mbedTLS would not have set them, then the firmware's own callback runs.
struct VerifyHook {
    int (*firmware)(void*, mbedtls_x509_crt*, int, uint32_t*) = nullptr;
    void* firmware_context = nullptr;
};

static int verify_as_device(void* context, mbedtls_x509_crt* crt, int depth, uint32_t* flags) {
    const VerifyHook* hook = static_cast<const VerifyHook*>(context);
    if (!gen_sim_mbedtls_have_time_date) {
        *flags &= ~static_cast<uint32_t>(MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE);
    }
    return hook->firmware ? hook->firmware(hook->firmware_context, crt, depth, flags) : 0;
}

struct Transport::State {
    int fd = -1;
    VerifyHook verify_hook;
    bool tls = false;
    bool open = false;
    bool have_ssl = false;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
    TransportError error;

    void init_contexts() {
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&drbg);
        mbedtls_ssl_init(&ssl);
        mbedtls_ssl_config_init(&conf);
        mbedtls_x509_crt_init(&ca);
        mbedtls_x509_crt_init(&cert);
        mbedtls_pk_init(&key);
        have_ssl = true;
    }
    void free_contexts() {
        if (!have_ssl) return;
        mbedtls_ssl_free(&ssl);
        mbedtls_ssl_config_free(&conf);
        mbedtls_x509_crt_free(&ca);
        mbedtls_x509_crt_free(&cert);
        mbedtls_pk_free(&key);
        mbedtls_ctr_drbg_free(&drbg);
        mbedtls_entropy_free(&entropy);
        have_ssl = false;
    }
    bool fail(TransportError::Stage stage, int mbed, int sock = 0) {
        error.stage = stage;
        error.mbedtls_error = mbed;
        error.sock_errno = sock;
        return false;
    }
};

Transport::Transport() : s_(new State) {}
Transport::~Transport() { close(); }

bool Transport::is_open() const { return s_->open; }
const TransportError& Transport::last_error() const { return s_->error; }

bool Transport::open(const char* host, uint16_t port, const TlsOptions& o, TransportError* error_out) {
    close();
    State& s = *s_;
    s.error = TransportError();
    s.error.destination = std::string(host) + ":" + std::to_string(port);
    bool ok = [&]() {
        int err = 0;
        s.fd = gen_sim_tcp_connect(host, port, o.connect_timeout_ms, &err);
        if (s.fd < 0) return s.fail(err < 0 ? TransportError::RESOLVE : TransportError::CONNECT, 0, err < 0 ? 0 : err);
        s.tls = o.use_tls;
        if (!s.tls) return true;

        s.init_contexts();
        static const char pers[] = "gen_host_tls";
        int rc = mbedtls_ctr_drbg_seed(&s.drbg, mbedtls_entropy_func, &s.entropy,
                                       reinterpret_cast<const unsigned char*>(pers), sizeof pers - 1);
        if (rc) return s.fail(TransportError::TLS_SETUP, rc);
        rc = mbedtls_ssl_config_defaults(&s.conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                         MBEDTLS_SSL_PRESET_DEFAULT);
        if (rc) return s.fail(TransportError::TLS_SETUP, rc);
        if (o.insecure) {
            mbedtls_ssl_conf_authmode(&s.conf, MBEDTLS_SSL_VERIFY_NONE);
        } else if (o.ca) {
            rc = mbedtls_x509_crt_parse(&s.ca, reinterpret_cast<const unsigned char*>(o.ca), o.ca_len);
            if (rc) return s.fail(TransportError::CERT_PARSE, rc);
            mbedtls_ssl_conf_ca_chain(&s.conf, &s.ca, nullptr);
            mbedtls_ssl_conf_authmode(&s.conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        } else {
            return s.fail(TransportError::TLS_SETUP, MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED);
        }
        if (!o.insecure && o.cert && o.key) {
            rc = mbedtls_x509_crt_parse(&s.cert, reinterpret_cast<const unsigned char*>(o.cert), o.cert_len);
            if (rc) return s.fail(TransportError::CERT_PARSE, rc);
            rc = mbedtls_pk_parse_key(&s.key, reinterpret_cast<const unsigned char*>(o.key), o.key_len,
                                      reinterpret_cast<const unsigned char*>(o.key_password), o.key_password_len);
            if (rc) return s.fail(TransportError::KEY_PARSE, rc);
            rc = mbedtls_ssl_conf_own_cert(&s.conf, &s.cert, &s.key);
            if (rc) return s.fail(TransportError::TLS_SETUP, rc);
        }
        s.verify_hook.firmware = o.verify;
        s.verify_hook.firmware_context = o.verify_context;
        mbedtls_ssl_conf_verify(&s.conf, verify_as_device, &s.verify_hook);
        mbedtls_ssl_conf_rng(&s.conf, mbedtls_ctr_drbg_random, &s.drbg);
        rc = mbedtls_ssl_setup(&s.ssl, &s.conf);
        if (rc) return s.fail(TransportError::TLS_SETUP, rc);
        rc = mbedtls_ssl_set_hostname(&s.ssl, o.verify_name);
        if (rc) return s.fail(TransportError::TLS_SETUP, rc);
        mbedtls_ssl_set_bio(&s.ssl, &s.fd, bio_send, bio_recv, nullptr);

        int64_t deadline = now_ms() + o.handshake_timeout_ms;
        while ((rc = mbedtls_ssl_handshake(&s.ssl)) != 0) {
            if (rc != MBEDTLS_ERR_SSL_WANT_READ && rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
                s.error.verify_flags = mbedtls_ssl_get_verify_result(&s.ssl);
                if (s.error.verify_flags == static_cast<uint32_t>(-1)) s.error.verify_flags = 0;
                return s.fail(TransportError::HANDSHAKE, rc);
            }
            int64_t left = deadline - now_ms();
            if (left <= 0) return s.fail(TransportError::HANDSHAKE_TIMEOUT, 0);
            wait_fd(s.fd, rc == MBEDTLS_ERR_SSL_WANT_READ ? POLLIN : POLLOUT, static_cast<int>(left));
        }
        return true;
    }();
    if (ok) {
        s.open = true;
    } else {
        TransportError saved = s.error;
        close();
        s.error = saved;
    }
    if (error_out) *error_out = s.error;
    return ok;
}

int Transport::available() {
    State& s = *s_;
    if (!s.open) return -1;
    if (!s.tls) {
        unsigned char probe;
        ssize_t n = recv(s.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) {
            int pending = 0;
            if (ioctl(s.fd, FIONREAD, &pending) != 0 || pending < 1) pending = 1;
            return pending;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
        int sock = n == 0 ? 0 : errno;
        close();
        s.error = TransportError();
        s.error.stage = TransportError::IO;
        s.error.sock_errno = sock;
        return -1;
    }
    size_t pending = mbedtls_ssl_get_bytes_avail(&s.ssl);
    if (pending) return static_cast<int>(pending);
    int rc = mbedtls_ssl_read(&s.ssl, nullptr, 0);
    pending = mbedtls_ssl_get_bytes_avail(&s.ssl);
    if (pending) return static_cast<int>(pending);
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
    if (rc == 0) {
        // A zero-length record; or EOF without close_notify: tell them apart with a peek.
        unsigned char probe;
        ssize_t n = recv(s.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) return 0;
        rc = MBEDTLS_ERR_SSL_CONN_EOF;
    }
    TransportError e;
    e.stage = TransportError::IO;
    e.mbedtls_error = (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_SSL_CONN_EOF) ? 0 : rc;
    close();
    s.error = e;
    return -1;
}

int Transport::read(uint8_t* buf, size_t len, int timeout_ms) {
    State& s = *s_;
    if (!s.open) return -1;
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int avail = available();
        if (avail < 0) return -1;
        if (avail > 0) {
            if (!s.tls) {
                ssize_t n = recv(s.fd, buf, len, MSG_DONTWAIT);
                if (n > 0) return static_cast<int>(n);
                if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                    close();
                    s.error.stage = TransportError::IO;
                    return -1;
                }
            } else {
                int n = mbedtls_ssl_read(&s.ssl, buf, len);
                if (n > 0) return n;
                if (n != MBEDTLS_ERR_SSL_WANT_READ && n != MBEDTLS_ERR_SSL_WANT_WRITE) {
                    close();
                    s.error.stage = TransportError::IO;
                    s.error.mbedtls_error = n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ? 0 : n;
                    return -1;
                }
            }
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) return 0;
        wait_fd(s.fd, POLLIN, static_cast<int>(left));
    }
}

int Transport::write(const uint8_t* buf, size_t len, int timeout_ms) {
    State& s = *s_;
    if (!s.open) return -1;
    int64_t deadline = now_ms() + timeout_ms;
    size_t done = 0;
    while (done < len) {
        int n;
        if (s.tls) {
            n = mbedtls_ssl_write(&s.ssl, buf + done, len - done);
        } else {
            ssize_t w = send(s.fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
            n = w >= 0 ? static_cast<int>(w)
                       : (errno == EAGAIN || errno == EWOULDBLOCK) ? MBEDTLS_ERR_SSL_WANT_WRITE : -1;
            if (n == -1) s.error.sock_errno = errno;
        }
        if (n > 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (n == MBEDTLS_ERR_SSL_WANT_WRITE || n == MBEDTLS_ERR_SSL_WANT_READ) {
            int64_t left = deadline - now_ms();
            if (left <= 0) n = MBEDTLS_ERR_SSL_TIMEOUT;
            else {
                wait_fd(s.fd, POLLOUT, static_cast<int>(left));
                continue;
            }
        }
        int sock = s.error.sock_errno;
        close();
        s.error.stage = TransportError::IO;
        s.error.mbedtls_error = s.tls ? n : 0;
        s.error.sock_errno = sock;
        return -1;
    }
    return static_cast<int>(done);
}

bool Transport::wait_readable(int timeout_ms) {
    State& s = *s_;
    if (!s.open) return false;
    if (s.tls && mbedtls_ssl_get_bytes_avail(&s.ssl) > 0) return true;
    return wait_fd(s.fd, POLLIN, timeout_ms);
}

void Transport::close() {
    State& s = *s_;
    if (s.open && s.tls) mbedtls_ssl_close_notify(&s.ssl);
    s.open = false;
    s.free_contexts();
    if (s.fd >= 0) gen_sim_tcp_close(s.fd);
    s.fd = -1;
}

}  // namespace gen_host
