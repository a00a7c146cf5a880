// Host runtime: esp_event. Each loop is a thread delivering events in order to the handlers
// registered for (base, id), like the device's default event loop task.
#include <string.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "esp_event.h"
#include "esp_log.h"
#include "gen_event_loop.h"

namespace {

struct Handler {
    esp_event_base_t base;
    int32_t id;
    esp_event_handler_t fn;
    void* arg;
    bool removed = false;
};

struct Event {
    esp_event_base_t base;
    int32_t id;
    std::vector<uint8_t> data;
};

}  // namespace

struct gen_event_loop {
    std::mutex m;
    std::condition_variable cv;
    std::deque<Event> queue;
    std::vector<std::shared_ptr<Handler>> handlers;
    bool stop = false;
    std::thread worker;

    void run() {
        for (;;) {
            Event ev;
            std::vector<std::shared_ptr<Handler>> snapshot;
            {
                std::unique_lock<std::mutex> lock(m);
                cv.wait(lock, [&] { return stop || !queue.empty(); });
                if (stop) return;
                ev = std::move(queue.front());
                queue.pop_front();
                snapshot = handlers;
            }
            void* data = ev.data.empty() ? nullptr : ev.data.data();
            for (auto& h : snapshot) {
                if (h->removed) continue;
                if (h->base != ESP_EVENT_ANY_BASE && h->base != ev.base && strcmp(h->base, ev.base) != 0) continue;
                if (h->id != ESP_EVENT_ANY_ID && h->id != ev.id) continue;
                h->fn(h->arg, ev.base, ev.id, data);
            }
        }
    }
};

namespace {

std::mutex default_mutex;
gen_event_loop* default_loop = nullptr;

gen_event_loop* loop_or_default(esp_event_loop_handle_t handle) {
    if (handle) return static_cast<gen_event_loop*>(handle);
    std::lock_guard<std::mutex> lock(default_mutex);
    return default_loop;
}

esp_err_t add_handler(gen_event_loop* loop, esp_event_base_t base, int32_t id, esp_event_handler_t fn, void* arg,
                      esp_event_handler_instance_t* instance) {
    if (!loop) return ESP_ERR_INVALID_STATE;
    if (!fn) return ESP_ERR_INVALID_ARG;
    auto h = std::make_shared<Handler>(Handler{base, id, fn, arg});
    std::lock_guard<std::mutex> lock(loop->m);
    loop->handlers.push_back(h);
    if (instance) *instance = h.get();
    return ESP_OK;
}

template <class Match>
esp_err_t remove_handlers(gen_event_loop* loop, Match match) {
    if (!loop) return ESP_ERR_INVALID_STATE;
    std::lock_guard<std::mutex> lock(loop->m);
    for (auto it = loop->handlers.begin(); it != loop->handlers.end();) {
        if (match(**it)) {
            (*it)->removed = true;
            it = loop->handlers.erase(it);
        } else {
            ++it;
        }
    }
    return ESP_OK;
}

esp_err_t post(gen_event_loop* loop, esp_event_base_t base, int32_t id, const void* data, size_t size) {
    if (!loop) return ESP_ERR_INVALID_STATE;
    Event ev{base, id, {}};
    if (data && size) ev.data.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
    std::lock_guard<std::mutex> lock(loop->m);
    loop->queue.push_back(std::move(ev));
    loop->cv.notify_one();
    return ESP_OK;
}

gen_event_loop* new_loop(bool with_task) {
    gen_event_loop* loop = new gen_event_loop;
    if (with_task) loop->worker = std::thread([loop] { loop->run(); });
    return loop;
}

}  // namespace

bool gen_event_default_loop_exists(void) {
    std::lock_guard<std::mutex> lock(default_mutex);
    return default_loop != nullptr;
}

extern "C" {

esp_err_t esp_event_loop_create_default(void) {
    std::lock_guard<std::mutex> lock(default_mutex);
    if (default_loop) return ESP_ERR_INVALID_STATE;
    default_loop = new_loop(true);
    return ESP_OK;
}

esp_err_t esp_event_loop_delete_default(void) {
    gen_event_loop* loop;
    {
        std::lock_guard<std::mutex> lock(default_mutex);
        loop = default_loop;
        default_loop = nullptr;
    }
    if (!loop) return ESP_ERR_INVALID_STATE;
    return esp_event_loop_delete(loop);
}

esp_err_t esp_event_loop_create(const esp_event_loop_args_t* args, esp_event_loop_handle_t* out) {
    if (!args || !out) return ESP_ERR_INVALID_ARG;
    *out = new_loop(args->task_name != nullptr);
    return ESP_OK;
}

esp_err_t esp_event_loop_delete(esp_event_loop_handle_t handle) {
    gen_event_loop* loop = static_cast<gen_event_loop*>(handle);
    {
        std::lock_guard<std::mutex> lock(loop->m);
        loop->stop = true;
        loop->cv.notify_all();
    }
    if (loop->worker.joinable()) {
        if (loop->worker.get_id() == std::this_thread::get_id()) loop->worker.detach();
        else loop->worker.join();
    }
    return ESP_OK;  // the loop object is leaked on purpose: a handler may still hold it
}

esp_err_t esp_event_loop_run(esp_event_loop_handle_t handle, TickType_t ticks) {
    (void)handle;
    (void)ticks;
    return ESP_ERR_NOT_SUPPORTED;
}

esp_err_t esp_event_handler_register(esp_event_base_t base, int32_t id, esp_event_handler_t fn, void* arg) {
    return add_handler(loop_or_default(nullptr), base, id, fn, arg, nullptr);
}
esp_err_t esp_event_handler_register_with(esp_event_loop_handle_t loop, esp_event_base_t base, int32_t id,
                                          esp_event_handler_t fn, void* arg) {
    return add_handler(loop_or_default(loop), base, id, fn, arg, nullptr);
}
esp_err_t esp_event_handler_instance_register(esp_event_base_t base, int32_t id, esp_event_handler_t fn, void* arg,
                                              esp_event_handler_instance_t* instance) {
    return add_handler(loop_or_default(nullptr), base, id, fn, arg, instance);
}
esp_err_t esp_event_handler_instance_register_with(esp_event_loop_handle_t loop, esp_event_base_t base, int32_t id,
                                                   esp_event_handler_t fn, void* arg,
                                                   esp_event_handler_instance_t* instance) {
    return add_handler(loop_or_default(loop), base, id, fn, arg, instance);
}
esp_err_t esp_event_handler_unregister(esp_event_base_t base, int32_t id, esp_event_handler_t fn) {
    return remove_handlers(loop_or_default(nullptr),
                           [&](const Handler& h) { return h.base == base && h.id == id && h.fn == fn; });
}
esp_err_t esp_event_handler_unregister_with(esp_event_loop_handle_t loop, esp_event_base_t base, int32_t id,
                                            esp_event_handler_t fn) {
    return remove_handlers(loop_or_default(loop),
                           [&](const Handler& h) { return h.base == base && h.id == id && h.fn == fn; });
}
esp_err_t esp_event_handler_instance_unregister(esp_event_base_t, int32_t, esp_event_handler_instance_t instance) {
    return remove_handlers(loop_or_default(nullptr), [&](const Handler& h) { return &h == instance; });
}
esp_err_t esp_event_handler_instance_unregister_with(esp_event_loop_handle_t loop, esp_event_base_t, int32_t,
                                                     esp_event_handler_instance_t instance) {
    return remove_handlers(loop_or_default(loop), [&](const Handler& h) { return &h == instance; });
}
esp_err_t esp_event_post(esp_event_base_t base, int32_t id, const void* data, size_t size, TickType_t) {
    return post(loop_or_default(nullptr), base, id, data, size);
}
esp_err_t esp_event_post_to(esp_event_loop_handle_t loop, esp_event_base_t base, int32_t id, const void* data,
                            size_t size, TickType_t) {
    return post(loop_or_default(loop), base, id, data, size);
}

}  // extern "C"
