// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// Retry timing, the same in every flavour: whether a deadline on a 32-bit millisecond clock has come (correct
// across the wrap after 49 days), and a capped exponential backoff with jitter: 1 s, 2 s, 4 s ... up to the cap,
// each delay drawn from [d/2, d], so a fleet that lost the broker together does not come back in lockstep.
// Valid C and C++.
#ifndef RETRY_TIMING_H
#define RETRY_TIMING_H

#include <stdbool.h>
#include <stdint.h>

static inline bool retry_due(uint32_t now_ms, uint32_t at_ms)
{
    return (int32_t)(now_ms - at_ms) >= 0;
}

typedef struct {
    uint32_t first_ms;
    uint32_t cap_ms;
    uint32_t failures;     // since the last success
} backoff_t;

// The delay before the next attempt, counting one more failure. `random`: any 32-bit random number (esp_random()).
static inline uint32_t backoff_next_delay_ms(backoff_t *backoff, uint32_t random)
{
    uint32_t delay_ms = backoff->first_ms;
    for (uint32_t i = 0; i < backoff->failures && delay_ms < backoff->cap_ms; ++i) {
        delay_ms *= 2;
    }
    if (delay_ms > backoff->cap_ms) {
        delay_ms = backoff->cap_ms;
    }
    ++backoff->failures;
    return delay_ms / 2 + random % (delay_ms / 2 + 1);
}

static inline void backoff_reset(backoff_t *backoff)
{
    backoff->failures = 0;
}

#endif  // RETRY_TIMING_H
