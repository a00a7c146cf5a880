/* FreeRTOS.h for the host runtime: ticks, and the types the task/event-group/semaphore headers use.
 * Tasks are POSIX threads; priorities and stack sizes are accepted and ignored. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "sdkconfig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint32_t TickType_t;
typedef long BaseType_t;
typedef unsigned long UBaseType_t;
typedef uint32_t StackType_t;

#define configTICK_RATE_HZ      ((TickType_t)CONFIG_FREERTOS_HZ)
#define portTICK_PERIOD_MS      ((TickType_t)1000 / configTICK_RATE_HZ)
#define portTICK_RATE_MS        portTICK_PERIOD_MS
#define portMAX_DELAY           ((TickType_t)0xffffffffUL)
#define pdMS_TO_TICKS(xTimeInMs) ((TickType_t)(((TickType_t)(xTimeInMs) * (TickType_t)configTICK_RATE_HZ) / (TickType_t)1000U))
#define pdTICKS_TO_MS(xTicks)   ((TickType_t)(((uint64_t)(xTicks) * 1000U) / configTICK_RATE_HZ))
#define pdFALSE                 ((BaseType_t)0)
#define pdTRUE                  ((BaseType_t)1)
#define pdPASS                  (pdTRUE)
#define pdFAIL                  (pdFALSE)
#define errQUEUE_EMPTY          ((BaseType_t)0)
#define errQUEUE_FULL           ((BaseType_t)0)
#define errCOULD_NOT_ALLOCATE_REQUIRED_MEMORY (-1)
#define configMAX_PRIORITIES    25
#define configMINIMAL_STACK_SIZE 768
#define tskNO_AFFINITY          0x7FFFFFFF
#define portNUM_PROCESSORS      2
#define portYIELD()             gen_freertos_yield()
#define taskYIELD()             gen_freertos_yield()
#define configASSERT(x)         do { if (!(x)) gen_freertos_assert_failed(__FILE__, __LINE__, #x); } while (0)

void gen_freertos_yield(void);
void gen_freertos_assert_failed(const char *file, int line, const char *expr) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif
