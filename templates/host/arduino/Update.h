// Update.h (arduino-esp32 2.0.x libraries/Update) for the host runtime: UpdateClass over the partition API, with
// Updater.cpp's rules: begin() takes the next OTA slot and refuses a size larger than it; the first write must
// start with the image magic 0xE9, and the first 16 bytes are held back (written by end()) so that a partly
// written image cannot boot; end() refuses an unfinished image, then calls esp_ota_set_boot_partition, which
// checks the image (chip id, checksum, SHA-256; no signature: the core's sdkconfig has no SECURE_SIGNED_*).
// Decryption (setupCrypt), SPIFFS updates, MD5 and the LED pin are not provided.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <functional>

#include "Arduino.h"
#include "esp_partition.h"

#define UPDATE_ERROR_OK (0)
#define UPDATE_ERROR_WRITE (1)
#define UPDATE_ERROR_ERASE (2)
#define UPDATE_ERROR_READ (3)
#define UPDATE_ERROR_SPACE (4)
#define UPDATE_ERROR_SIZE (5)
#define UPDATE_ERROR_STREAM (6)
#define UPDATE_ERROR_MD5 (7)
#define UPDATE_ERROR_MAGIC_BYTE (8)
#define UPDATE_ERROR_ACTIVATE (9)
#define UPDATE_ERROR_NO_PARTITION (10)
#define UPDATE_ERROR_BAD_ARGUMENT (11)
#define UPDATE_ERROR_ABORT (12)
#define UPDATE_ERROR_DECRYPT (13)

#define UPDATE_SIZE_UNKNOWN 0xFFFFFFFF

#define U_FLASH 0
#define U_SPIFFS 100
#define U_AUTH 200

class UpdateClass {
public:
    typedef std::function<void(size_t, size_t)> THandlerFunction_Progress;

    UpdateClass();
    UpdateClass &onProgress(THandlerFunction_Progress fn);
    bool begin(size_t size = UPDATE_SIZE_UNKNOWN, int command = U_FLASH, int ledPin = -1, uint8_t ledOn = LOW,
               const char *label = NULL);
    size_t write(uint8_t *data, size_t len);
    bool end(bool evenIfRemaining = false);
    void abort();
    const char *errorString();
    uint8_t getError() { return _error; }
    void clearError() { _error = UPDATE_ERROR_OK; }
    bool hasError() { return _error != UPDATE_ERROR_OK; }
    bool isRunning() { return _size > 0; }
    bool isFinished() { return _progress == _size; }
    size_t size() { return _size; }
    size_t progress() { return _progress; }
    size_t remaining() { return _size - _progress; }

private:
    void _reset();
    void _abort(uint8_t err);
    bool _writeBuffer();
    bool _verifyEnd();

    uint8_t _error;
    uint8_t *_buffer;
    uint8_t _skipBuffer[16];
    size_t _bufferLen;
    size_t _size;
    THandlerFunction_Progress _progress_callback;
    uint32_t _progress;
    const esp_partition_t *_partition;
};

extern UpdateClass Update;
