// Host runtime: esp_err, esp_log, esp_timer, esp_random, esp_system, esp_mac and FreeRTOS.
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "esp_err.h"
#include "esp_idf_version.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_ota_ops.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "esp_tls_errors.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "gen_sim.h"
#include "nvs.h"

// ---- esp_err -------------------------------------------------------------------------------------

namespace {
struct ErrName {
    esp_err_t code;
    const char* name;
};
#define ERR(x) {x, #x}
const ErrName err_names[] = {
    ERR(ESP_OK), ERR(ESP_FAIL), ERR(ESP_ERR_NO_MEM), ERR(ESP_ERR_INVALID_ARG), ERR(ESP_ERR_INVALID_STATE),
    ERR(ESP_ERR_INVALID_SIZE), ERR(ESP_ERR_NOT_FOUND), ERR(ESP_ERR_NOT_SUPPORTED), ERR(ESP_ERR_TIMEOUT),
    ERR(ESP_ERR_INVALID_RESPONSE), ERR(ESP_ERR_INVALID_CRC), ERR(ESP_ERR_INVALID_VERSION),
    ERR(ESP_ERR_INVALID_MAC), ERR(ESP_ERR_NOT_FINISHED), ERR(ESP_ERR_NOT_ALLOWED),
    ERR(ESP_ERR_NVS_NOT_INITIALIZED), ERR(ESP_ERR_NVS_NOT_FOUND), ERR(ESP_ERR_NVS_TYPE_MISMATCH),
    ERR(ESP_ERR_NVS_READ_ONLY), ERR(ESP_ERR_NVS_NOT_ENOUGH_SPACE), ERR(ESP_ERR_NVS_INVALID_NAME),
    ERR(ESP_ERR_NVS_INVALID_HANDLE), ERR(ESP_ERR_NVS_REMOVE_FAILED), ERR(ESP_ERR_NVS_KEY_TOO_LONG),
    ERR(ESP_ERR_NVS_PAGE_FULL), ERR(ESP_ERR_NVS_INVALID_STATE), ERR(ESP_ERR_NVS_INVALID_LENGTH),
    ERR(ESP_ERR_NVS_NO_FREE_PAGES), ERR(ESP_ERR_NVS_VALUE_TOO_LONG), ERR(ESP_ERR_NVS_PART_NOT_FOUND),
    ERR(ESP_ERR_NVS_NEW_VERSION_FOUND),
    ERR(ESP_ERR_WIFI_NOT_INIT), ERR(ESP_ERR_WIFI_NOT_STARTED), ERR(ESP_ERR_WIFI_NOT_STOPPED),
    ERR(ESP_ERR_WIFI_IF), ERR(ESP_ERR_WIFI_MODE), ERR(ESP_ERR_WIFI_STATE), ERR(ESP_ERR_WIFI_CONN),
    ERR(ESP_ERR_WIFI_SSID), ERR(ESP_ERR_WIFI_PASSWORD), ERR(ESP_ERR_WIFI_TIMEOUT),
    ERR(ESP_ERR_ESP_TLS_CANNOT_RESOLVE_HOSTNAME), ERR(ESP_ERR_ESP_TLS_CANNOT_CREATE_SOCKET),
    ERR(ESP_ERR_ESP_TLS_UNSUPPORTED_PROTOCOL_FAMILY), ERR(ESP_ERR_ESP_TLS_FAILED_CONNECT_TO_HOST),
    ERR(ESP_ERR_ESP_TLS_SOCKET_SETOPT_FAILED), ERR(ESP_ERR_ESP_TLS_CONNECTION_TIMEOUT),
    ERR(ESP_ERR_ESP_TLS_SE_FAILED), ERR(ESP_ERR_ESP_TLS_TCP_CLOSED_FIN),
    ERR(ESP_ERR_ESP_TLS_SERVER_HANDSHAKE_TIMEOUT), ERR(ESP_ERR_MBEDTLS_CERT_PARTLY_OK),
    ERR(ESP_ERR_MBEDTLS_CTR_DRBG_SEED_FAILED), ERR(ESP_ERR_MBEDTLS_SSL_SET_HOSTNAME_FAILED),
    ERR(ESP_ERR_MBEDTLS_SSL_CONFIG_DEFAULTS_FAILED), ERR(ESP_ERR_MBEDTLS_SSL_CONF_ALPN_PROTOCOLS_FAILED),
    ERR(ESP_ERR_MBEDTLS_X509_CRT_PARSE_FAILED), ERR(ESP_ERR_MBEDTLS_SSL_CONF_OWN_CERT_FAILED),
    ERR(ESP_ERR_MBEDTLS_SSL_SETUP_FAILED), ERR(ESP_ERR_MBEDTLS_SSL_WRITE_FAILED),
    ERR(ESP_ERR_MBEDTLS_PK_PARSE_KEY_FAILED), ERR(ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED),
    ERR(ESP_ERR_MBEDTLS_SSL_CONF_PSK_FAILED), ERR(ESP_ERR_MBEDTLS_SSL_TICKET_SETUP_FAILED),
    ERR(ESP_ERR_MBEDTLS_SSL_READ_FAILED),
    ERR(ESP_ERR_OTA_PARTITION_CONFLICT), ERR(ESP_ERR_OTA_SELECT_INFO_INVALID), ERR(ESP_ERR_OTA_VALIDATE_FAILED),
    ERR(ESP_ERR_OTA_SMALL_SEC_VER), ERR(ESP_ERR_OTA_ROLLBACK_FAILED), ERR(ESP_ERR_OTA_ROLLBACK_INVALID_STATE),
};
#undef ERR
}  // namespace

extern "C" const char* esp_err_to_name(esp_err_t code) {
    for (const auto& e : err_names)
        if (e.code == code) return e.name;
    return "UNKNOWN ERROR";
}

extern "C" const char* esp_err_to_name_r(esp_err_t code, char* buf, size_t buflen) {
    const char* name = esp_err_to_name(code);
    if (strcmp(name, "UNKNOWN ERROR") == 0) snprintf(buf, buflen, "Unknown error %d", code);
    else snprintf(buf, buflen, "%s", name);
    return buf;
}

extern "C" void _esp_error_check_failed(esp_err_t rc, const char* file, int line, const char* function,
                                        const char* expression) {
    printf("ESP_ERROR_CHECK failed: esp_err_t 0x%x (%s) at 0x%08x\nfile: \"%s\" line %d\nfunc: %s\nexpression: %s\n",
           rc, esp_err_to_name(rc), 0x400d0000u, file, line, function, expression);
    printf("\nabort() was called at PC 0x400d0000 on core 0\n");
    gen_sim_restart("abort()");
}

extern "C" void _esp_error_check_failed_without_abort(esp_err_t rc, const char* file, int line,
                                                      const char* function, const char* expression) {
    printf("ESP_ERROR_CHECK_WITHOUT_ABORT failed: esp_err_t 0x%x (%s) at 0x%08x\nfile: \"%s\" line %d\nfunc: %s\nexpression: %s\n",
           rc, esp_err_to_name(rc), 0x400d0000u, file, line, function, expression);
}

// ---- esp_log -------------------------------------------------------------------------------------

namespace {
std::mutex log_mutex;
std::map<std::string, esp_log_level_t> log_levels;
esp_log_level_t log_default = static_cast<esp_log_level_t>(CONFIG_LOG_DEFAULT_LEVEL);
}  // namespace

extern "C" void esp_log_level_set(const char* tag, esp_log_level_t level) {
    std::lock_guard<std::mutex> lock(log_mutex);
    if (strcmp(tag, "*") == 0) {
        log_default = level;
        log_levels.clear();
    } else {
        log_levels[tag] = level;
    }
}

extern "C" esp_log_level_t esp_log_level_get(const char* tag) {
    std::lock_guard<std::mutex> lock(log_mutex);
    auto it = log_levels.find(tag);
    return it == log_levels.end() ? log_default : it->second;
}

extern "C" uint32_t esp_log_timestamp(void) { return gen_sim_millis(); }
extern "C" uint32_t esp_log_early_timestamp(void) { return gen_sim_millis(); }

static vprintf_like_t log_vprintf = vprintf;

extern "C" vprintf_like_t esp_log_set_vprintf(vprintf_like_t func) {
    vprintf_like_t previous = log_vprintf;
    log_vprintf = func;
    return previous;
}

extern "C" void esp_log_writev(esp_log_level_t level, const char* tag, const char* format, va_list args) {
    if (level > esp_log_level_get(tag)) return;
    log_vprintf(format, args);
}

extern "C" void esp_log_write(esp_log_level_t level, const char* tag, const char* format, ...) {
    va_list ap;
    va_start(ap, format);
    esp_log_writev(level, tag, format, ap);
    va_end(ap);
}

extern "C" void esp_log_buffer_hex_internal(const char* tag, const void* buffer, uint16_t len, esp_log_level_t level) {
    const uint8_t* b = static_cast<const uint8_t*>(buffer);
    for (uint16_t off = 0; off < len; off += 16) {
        char line[3 * 16 + 1] = {0};
        for (uint16_t i = off; i < len && i < off + 16; i++) snprintf(line + 3 * (i - off), 4, "%02x ", b[i]);
        esp_log_write(level, tag, "%c (%" PRIu32 ") %s: %s\n", "NEWIDV"[level], esp_log_timestamp(), tag, line);
    }
}

extern "C" void esp_log_buffer_char_internal(const char* tag, const void* buffer, uint16_t len, esp_log_level_t level) {
    esp_log_write(level, tag, "%c (%" PRIu32 ") %s: %.*s\n", "NEWIDV"[level], esp_log_timestamp(), tag, len,
                  static_cast<const char*>(buffer));
}

// ---- esp_timer, esp_random, esp_system, esp_mac, version ------------------------------------------

extern "C" int64_t esp_timer_get_time(void) { return static_cast<int64_t>(gen_sim_micros()); }

extern "C" void esp_fill_random(void* buf, size_t len) {
    static int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    uint8_t* p = static_cast<uint8_t*>(buf);
    while (len > 0) {
        ssize_t n = fd >= 0 ? read(fd, p, len) : -1;
        if (n <= 0) {
            for (size_t i = 0; i < len; i++) p[i] = static_cast<uint8_t>(rand());
            return;
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
}

extern "C" uint32_t esp_random(void) {
    uint32_t v;
    esp_fill_random(&v, sizeof v);
    return v;
}

extern "C" void esp_restart(void) { gen_sim_restart("esp_restart()"); }
extern "C" esp_reset_reason_t esp_reset_reason(void) { return ESP_RST_POWERON; }
extern "C" esp_err_t esp_register_shutdown_handler(shutdown_handler_t) { return ESP_OK; }
extern "C" uint32_t esp_get_free_heap_size(void) { return 250000; }
extern "C" uint32_t esp_get_free_internal_heap_size(void) { return 250000; }
extern "C" uint32_t esp_get_minimum_free_heap_size(void) { return 240000; }
extern "C" void esp_system_abort(const char* details) {
    printf("%s\n", details);
    gen_sim_restart("esp_system_abort()");
}
extern "C" const char* esp_get_idf_version(void) { return gen_sim_idf_version; }

extern "C" esp_err_t esp_read_mac(uint8_t* mac, esp_mac_type_t type) {
    if (!mac) return ESP_ERR_INVALID_ARG;
    gen_sim_mac(mac);
    if (type == ESP_MAC_WIFI_SOFTAP) mac[5] += 1;
    else if (type == ESP_MAC_BT) mac[5] += 2;
    else if (type == ESP_MAC_ETH) mac[5] += 3;
    return ESP_OK;
}
extern "C" esp_err_t esp_efuse_mac_get_default(uint8_t* mac) { return esp_read_mac(mac, ESP_MAC_BASE); }
extern "C" esp_err_t esp_base_mac_addr_get(uint8_t* mac) { return esp_read_mac(mac, ESP_MAC_BASE); }

// ---- FreeRTOS ------------------------------------------------------------------------------------

namespace {

uint64_t ticks_to_ms(TickType_t ticks) { return static_cast<uint64_t>(ticks) * 1000u / gen_sim_tick_hz; }

// Absolute deadline for a FreeRTOS block time (portMAX_DELAY: forever).
struct Deadline {
    bool forever;
    std::chrono::steady_clock::time_point at;
    explicit Deadline(TickType_t ticks)
        : forever(ticks == portMAX_DELAY),
          at(std::chrono::steady_clock::now() + std::chrono::milliseconds(forever ? 0 : ticks_to_ms(ticks))) {}
    template <class Pred>
    bool wait(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, Pred pred) const {
        if (forever) {
            cv.wait(lock, pred);
            return true;
        }
        return cv.wait_until(lock, at, pred);
    }
};

}  // namespace

struct gen_task {
    std::string name;
    TaskFunction_t fn;
    void* arg;
};

namespace {
thread_local gen_task* current_task = nullptr;
gen_task main_task{"main", nullptr, nullptr};
std::mutex scheduler_mutex;  // vTaskSuspendAll/xTaskResumeAll

void* task_trampoline(void* p) {
    gen_task* t = static_cast<gen_task*>(p);
    current_task = t;
    pthread_setname_np(pthread_self(), t->name.substr(0, 15).c_str());
    t->fn(t->arg);
    // Returning from a task function is a bug on FreeRTOS (it asserts); end the thread quietly here.
    return nullptr;
}
}  // namespace

extern "C" BaseType_t xTaskCreatePinnedToCore(TaskFunction_t fn, const char* const name, const uint32_t,
                                              void* const arg, UBaseType_t, TaskHandle_t* const created,
                                              const BaseType_t) {
    gen_task* t = new gen_task{name ? name : "task", fn, arg};
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, task_trampoline, t);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        delete t;
        return errCOULD_NOT_ALLOCATE_REQUIRED_MEMORY;
    }
    if (created) *created = t;
    return pdPASS;
}

extern "C" BaseType_t xTaskCreate(TaskFunction_t fn, const char* const name, const uint32_t stack, void* const arg,
                                  UBaseType_t prio, TaskHandle_t* const created) {
    return xTaskCreatePinnedToCore(fn, name, stack, arg, prio, created, tskNO_AFFINITY);
}

extern "C" void vTaskDelete(TaskHandle_t task) {
    if (task == nullptr || task == current_task) {
        pthread_exit(nullptr);
    }
    gen_sim_log("vTaskDelete() of another task is not supported by the host runtime; task \"%s\" keeps running",
                task->name.c_str());
}

extern "C" void vTaskDelay(const TickType_t ticks) {
    if (ticks == 0) {
        std::this_thread::yield();
        return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(ticks_to_ms(ticks)));
}

extern "C" TickType_t xTaskGetTickCount(void) {
    return static_cast<TickType_t>(gen_sim_micros() * gen_sim_tick_hz / 1000000u);
}
extern "C" TickType_t xTaskGetTickCountFromISR(void) { return xTaskGetTickCount(); }

extern "C" BaseType_t xTaskDelayUntil(TickType_t* const previous, const TickType_t increment) {
    TickType_t target = *previous + increment;
    TickType_t now = xTaskGetTickCount();
    *previous = target;
    if (static_cast<int32_t>(target - now) > 0) {
        vTaskDelay(target - now);
        return pdTRUE;
    }
    return pdFALSE;
}
extern "C" void vTaskDelayUntil(TickType_t* const previous, const TickType_t increment) {
    xTaskDelayUntil(previous, increment);
}

extern "C" TaskHandle_t xTaskGetCurrentTaskHandle(void) { return current_task ? current_task : &main_task; }
extern "C" char* pcTaskGetName(TaskHandle_t task) {
    gen_task* t = task ? task : xTaskGetCurrentTaskHandle();
    return const_cast<char*>(t->name.c_str());
}
extern "C" UBaseType_t uxTaskGetStackHighWaterMark(TaskHandle_t) { return 1024; }
extern "C" void vTaskSuspendAll(void) { scheduler_mutex.lock(); }
extern "C" BaseType_t xTaskResumeAll(void) {
    scheduler_mutex.unlock();
    return pdFALSE;
}
extern "C" void gen_freertos_yield(void) { std::this_thread::yield(); }
extern "C" void gen_freertos_assert_failed(const char* file, int line, const char* expr) {
    printf("assert failed: %s %s:%d (%s)\n", "configASSERT", file, line, expr);
    gen_sim_restart("abort()");
}

struct gen_event_group {
    std::mutex m;
    std::condition_variable cv;
    EventBits_t bits = 0;
};

extern "C" EventGroupHandle_t xEventGroupCreate(void) { return new gen_event_group; }
extern "C" void vEventGroupDelete(EventGroupHandle_t g) { delete g; }

extern "C" EventBits_t xEventGroupWaitBits(EventGroupHandle_t g, const EventBits_t wanted, const BaseType_t clear,
                                           const BaseType_t all, TickType_t ticks) {
    std::unique_lock<std::mutex> lock(g->m);
    auto satisfied = [&] { return all ? (g->bits & wanted) == wanted : (g->bits & wanted) != 0; };
    bool ok = Deadline(ticks).wait(g->cv, lock, satisfied);
    EventBits_t result = g->bits;
    if (ok && clear) g->bits &= ~wanted;
    return result;
}

extern "C" EventBits_t xEventGroupSetBits(EventGroupHandle_t g, const EventBits_t bits) {
    std::lock_guard<std::mutex> lock(g->m);
    g->bits |= bits;
    g->cv.notify_all();
    return g->bits;
}

extern "C" EventBits_t xEventGroupClearBits(EventGroupHandle_t g, const EventBits_t bits) {
    std::lock_guard<std::mutex> lock(g->m);
    EventBits_t before = g->bits;
    g->bits &= ~bits;
    return before;
}

extern "C" EventBits_t xEventGroupGetBits(EventGroupHandle_t g) {
    std::lock_guard<std::mutex> lock(g->m);
    return g->bits;
}

struct gen_semaphore {
    std::mutex m;
    std::condition_variable cv;
    UBaseType_t count;
    UBaseType_t max;
    bool recursive;
    std::thread::id owner;
    UBaseType_t depth = 0;
};

extern "C" SemaphoreHandle_t xSemaphoreCreateMutex(void) { return new gen_semaphore{{}, {}, 1, 1, false, {}, 0}; }
extern "C" SemaphoreHandle_t xSemaphoreCreateRecursiveMutex(void) { return new gen_semaphore{{}, {}, 1, 1, true, {}, 0}; }
extern "C" SemaphoreHandle_t xSemaphoreCreateBinary(void) { return new gen_semaphore{{}, {}, 0, 1, false, {}, 0}; }
extern "C" SemaphoreHandle_t xSemaphoreCreateCounting(UBaseType_t max, UBaseType_t initial) {
    return new gen_semaphore{{}, {}, initial, max, false, {}, 0};
}
extern "C" BaseType_t xSemaphoreTake(SemaphoreHandle_t s, TickType_t ticks) {
    std::unique_lock<std::mutex> lock(s->m);
    if (!Deadline(ticks).wait(s->cv, lock, [&] { return s->count > 0; })) return pdFALSE;
    s->count--;
    return pdTRUE;
}
extern "C" BaseType_t xSemaphoreGive(SemaphoreHandle_t s) {
    std::lock_guard<std::mutex> lock(s->m);
    if (s->count >= s->max) return pdFALSE;
    s->count++;
    s->cv.notify_one();
    return pdTRUE;
}
extern "C" BaseType_t xSemaphoreTakeRecursive(SemaphoreHandle_t s, TickType_t ticks) {
    {
        std::lock_guard<std::mutex> lock(s->m);
        if (s->depth > 0 && s->owner == std::this_thread::get_id()) {
            s->depth++;
            return pdTRUE;
        }
    }
    if (xSemaphoreTake(s, ticks) != pdTRUE) return pdFALSE;
    std::lock_guard<std::mutex> lock(s->m);
    s->owner = std::this_thread::get_id();
    s->depth = 1;
    return pdTRUE;
}
extern "C" BaseType_t xSemaphoreGiveRecursive(SemaphoreHandle_t s) {
    {
        std::lock_guard<std::mutex> lock(s->m);
        if (s->depth == 0 || s->owner != std::this_thread::get_id()) return pdFALSE;
        if (--s->depth > 0) return pdTRUE;
    }
    return xSemaphoreGive(s);
}
extern "C" void vSemaphoreDelete(SemaphoreHandle_t s) { delete s; }

struct gen_queue {
    std::mutex m;
    std::condition_variable cv;
    UBaseType_t length;
    UBaseType_t item_size;
    std::deque<std::vector<uint8_t>> items;
};

extern "C" QueueHandle_t xQueueCreate(UBaseType_t length, UBaseType_t item_size) {
    gen_queue* q = new gen_queue;
    q->length = length;
    q->item_size = item_size;
    return q;
}
static BaseType_t queue_send(QueueHandle_t q, const void* item, TickType_t ticks, bool front) {
    std::unique_lock<std::mutex> lock(q->m);
    if (!Deadline(ticks).wait(q->cv, lock, [&] { return q->items.size() < q->length; })) return errQUEUE_FULL;
    const uint8_t* p = static_cast<const uint8_t*>(item);
    std::vector<uint8_t> copy(p, p + q->item_size);
    if (front) q->items.push_front(std::move(copy));
    else q->items.push_back(std::move(copy));
    q->cv.notify_all();
    return pdPASS;
}
extern "C" BaseType_t xQueueSend(QueueHandle_t q, const void* item, TickType_t ticks) { return queue_send(q, item, ticks, false); }
extern "C" BaseType_t xQueueSendToBack(QueueHandle_t q, const void* item, TickType_t ticks) { return queue_send(q, item, ticks, false); }
extern "C" BaseType_t xQueueSendToFront(QueueHandle_t q, const void* item, TickType_t ticks) { return queue_send(q, item, ticks, true); }
extern "C" BaseType_t xQueueReceive(QueueHandle_t q, void* buffer, TickType_t ticks) {
    std::unique_lock<std::mutex> lock(q->m);
    if (!Deadline(ticks).wait(q->cv, lock, [&] { return !q->items.empty(); })) return errQUEUE_EMPTY;
    memcpy(buffer, q->items.front().data(), q->item_size);
    q->items.pop_front();
    q->cv.notify_all();
    return pdPASS;
}
extern "C" UBaseType_t uxQueueMessagesWaiting(QueueHandle_t q) {
    std::lock_guard<std::mutex> lock(q->m);
    return q->items.size();
}
extern "C" BaseType_t xQueueReset(QueueHandle_t q) {
    std::lock_guard<std::mutex> lock(q->m);
    q->items.clear();
    q->cv.notify_all();
    return pdPASS;
}
extern "C" void vQueueDelete(QueueHandle_t q) { delete q; }

// ---- libc compatibility: newlib (the device's libc) has strlcpy/strlcat, glibc < 2.38 does not -----

#if !defined(__GLIBC__) || __GLIBC__ < 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ < 38)
extern "C" size_t strlcpy(char* dst, const char* src, size_t size) {
    size_t len = strlen(src);
    if (size) {
        size_t n = len >= size ? size - 1 : len;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return len;
}
extern "C" size_t strlcat(char* dst, const char* src, size_t size) {
    size_t dlen = strnlen(dst, size);
    if (dlen == size) return size + strlen(src);
    return dlen + strlcpy(dst + dlen, src, size - dlen);
}
#endif
