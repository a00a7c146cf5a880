// Simulation controls of the host runtime. See templates/host/README.md, "Simulation controls".
#include "gen_sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

uint32_t gen_sim_tick_hz = 1000;
size_t gen_sim_sntp_max_servers = 1;
const char* gen_sim_idf_version = "v5.5.3";
int gen_sim_core_debug_level = 0;
uint16_t gen_sim_firmware_chip_id = 0;
bool gen_sim_app_rollback_enable = false;
bool gen_sim_signed_on_update = false;
bool gen_sim_app_anti_rollback = false;
uint32_t gen_sim_secure_version_field_bits = 32;
bool gen_sim_mbedtls_have_time_date = false;
bool gen_sim_nvs_encryption = false;

namespace {

const auto boot_time = std::chrono::steady_clock::now();

std::mutex sim_mutex;  // guards everything below that is not atomic
std::atomic<bool> link_is_up{true};
std::atomic<bool> station_has_ip{false};
std::vector<gen_sim_link_listener_t> link_listeners;
std::set<int> open_sockets;

struct ConnectMapping {
    std::string host, port, to_host, to_port;
};

std::vector<ConnectMapping> parse_connect_to(const char* spec) {
    std::vector<ConnectMapping> out;
    if (!spec) return out;
    std::string all(spec);
    size_t start = 0;
    while (start <= all.size()) {
        size_t comma = all.find(',', start);
        std::string item = all.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        std::vector<std::string> parts;
        size_t p = 0;
        while (true) {
            size_t colon = item.find(':', p);
            parts.push_back(item.substr(p, colon == std::string::npos ? std::string::npos : colon - p));
            if (colon == std::string::npos) break;
            p = colon + 1;
        }
        if (parts.size() == 4) {
            out.push_back({parts[0], parts[1], parts[2], parts[3]});
        } else if (!item.empty()) {
            gen_sim_log("GEN_SIM_CONNECT_TO: ignoring \"%s\" (want host:port:addr:port)", item.c_str());
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

// Applies the first matching GEN_SIM_CONNECT_TO entry (empty fields match anything, like curl).
void map_destination(const char* host, uint16_t port, std::string* out_host, std::string* out_port) {
    static const std::vector<ConnectMapping> mappings = parse_connect_to(getenv("GEN_SIM_CONNECT_TO"));
    *out_host = host;
    *out_port = std::to_string(port);
    for (const auto& m : mappings) {
        bool host_ok = m.host.empty() || strcasecmp(m.host.c_str(), host) == 0;
        bool port_ok = m.port.empty() || port == 0 || m.port == *out_port;  // port 0: a name lookup, any port
        if (host_ok && port_ok) {
            if (!m.to_host.empty()) *out_host = m.to_host;
            if (!m.to_port.empty()) *out_port = m.to_port;
            return;
        }
    }
}

void set_link(bool up) {
    std::vector<gen_sim_link_listener_t> listeners;
    {
        std::lock_guard<std::mutex> lock(sim_mutex);
        if (link_is_up.load() == up) return;
        link_is_up = up;
        if (!up) {
            for (int fd : open_sockets) shutdown(fd, SHUT_RDWR);
        }
        listeners = link_listeners;
    }
    gen_sim_log("wifi link %s", up ? "up" : "down");
    for (auto listener : listeners) listener(up);
}

double env_seconds(const char* name, double fallback) {
    const char* v = getenv(name);
    if (!v || !*v) return fallback;
    char* end = nullptr;
    double d = strtod(v, &end);
    return (end && *end == '\0' && d >= 0) ? d : fallback;
}

void fault_schedule_thread(double drop_after, double down_for) {
    std::this_thread::sleep_for(std::chrono::duration<double>(drop_after));
    set_link(false);
    std::this_thread::sleep_for(std::chrono::duration<double>(down_for));
    set_link(true);
}

void signal_thread(sigset_t set) {
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGUSR1) {
            set_link(!link_is_up.load());
            continue;
        }
        fflush(stdout);
        printf("[sim] stopped by %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        gen_sim_exit(0);
    }
}

}  // namespace

extern "C" {

void gen_sim_start(void) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    // Blocked here, before any other thread exists, so every task inherits the mask and only the
    // signal thread sees them.
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::thread(signal_thread, set).detach();

    double drop_after = env_seconds("GEN_SIM_DROP_WIFI_AFTER", -1);
    if (drop_after >= 0) {
        double down_for = env_seconds("GEN_SIM_WIFI_DOWN_FOR", 5);
        std::thread(fault_schedule_thread, drop_after, down_for).detach();
    }
}

uint32_t gen_sim_millis(void) {
    return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - boot_time).count());
}

uint64_t gen_sim_micros(void) {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - boot_time).count());
}

bool gen_sim_link_up(void) { return link_is_up.load(); }

void gen_sim_on_link_change(gen_sim_link_listener_t listener) {
    std::lock_guard<std::mutex> lock(sim_mutex);
    link_listeners.push_back(listener);
}

void gen_sim_set_have_ip(bool have_ip) { station_has_ip = have_ip; }
bool gen_sim_have_ip(void) { return station_has_ip.load(); }

bool gen_sim_resolve_ipv4(const char* host, uint8_t out[4]) {
    std::string to_host, to_port;
    map_destination(host, 0, &to_host, &to_port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = nullptr;
    if (getaddrinfo(to_host.c_str(), nullptr, &hints, &res) != 0 || !res) return false;
    memcpy(out, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, 4);
    freeaddrinfo(res);
    return true;
}

int gen_sim_tcp_connect(const char* host, uint16_t port, int timeout_ms, int* err) {
    int dummy = 0;
    if (!err) err = &dummy;
    if (!link_is_up.load() || !station_has_ip.load()) {
        *err = ENETUNREACH;
        return -1;
    }
    std::string to_host, to_port;
    map_destination(host, port, &to_host, &to_port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;  // the device's lwIP stack is configured IPv4-only
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = nullptr;
    int gai = getaddrinfo(to_host.c_str(), to_port.c_str(), &hints, &res);
    if (gai != 0 || !res) {
        *err = gai == EAI_SYSTEM ? errno : -abs(gai);
        return -1;
    }
    int fd = -1;
    *err = ECONNREFUSED;
    for (struct addrinfo* ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            *err = errno;
            continue;
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            rc = poll(&p, 1, timeout_ms);
            if (rc == 0) {
                errno = ETIMEDOUT;
                rc = -1;
            } else if (rc > 0) {
                int so_error = 0;
                socklen_t len = sizeof so_error;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
                errno = so_error;
                rc = so_error ? -1 : 0;
            }
        }
        if (rc == 0) break;
        *err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard<std::mutex> lock(sim_mutex);
    if (!link_is_up.load()) {  // the link dropped while we were dialling
        close(fd);
        *err = ENETUNREACH;
        return -1;
    }
    open_sockets.insert(fd);
    *err = 0;
    return fd;
}

void gen_sim_tcp_close(int fd) {
    if (fd < 0) return;
    {
        std::lock_guard<std::mutex> lock(sim_mutex);
        open_sockets.erase(fd);
    }
    close(fd);
}

bool gen_sim_time_source_answers(void) {
    const char* off = getenv("GEN_SIM_NO_TIME_SOURCE");
    return off == nullptr || off[0] == '\0' || strcmp(off, "0") == 0;
}

void gen_sim_mac(uint8_t mac[6]) {
    const char* forced = getenv("GEN_SIM_MAC");
    unsigned int b[6];
    if (forced && sscanf(forced, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) == 6) {
        for (int i = 0; i < 6; i++) mac[i] = static_cast<uint8_t>(b[i]);
        return;
    }
    char exe[4096] = {0};
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) n = 0;
    std::string seed(exe, static_cast<size_t>(n));
    const char* nvs = getenv("GEN_SIM_NVS");
    if (nvs) seed += nvs;
    uint32_t h = 2166136261u;  // FNV-1a
    for (unsigned char c : seed) h = (h ^ c) * 16777619u;
    // Espressif's OUI, then three bytes unique per simulated device.
    mac[0] = 0x24; mac[1] = 0x0A; mac[2] = 0xC4;
    mac[3] = static_cast<uint8_t>(h >> 16);
    mac[4] = static_cast<uint8_t>(h >> 8);
    mac[5] = static_cast<uint8_t>(h);
}

void gen_sim_exit(int code) {
    fflush(stdout);
    _exit(code);
}

void gen_sim_restart(const char* why) {
    gen_sim_log("%s: the device would reboot now; the simulation exits with code 3", why);
    gen_sim_exit(3);
}

void gen_sim_log(const char* fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("[sim] %s\n", buf);
}

}  // extern "C"
