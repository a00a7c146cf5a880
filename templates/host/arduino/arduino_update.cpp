// Host runtime: Update (arduino-esp32 2.0.x libraries/Update/src/Updater.cpp) over the partition imitation, with its
// rules: the next OTA slot, a size no larger than it, the first write checked for the magic 0xE9 and its first 16
// bytes held back until end(), 4 KB sector buffering with each sector erased before it is written, end() refusing
// an unfinished image and switching slots with esp_ota_set_boot_partition (which checks the image). Plain library
// code over the ESP-IDF 4.4 partition and OTA APIs, as the core's is.
#include <stdlib.h>
#include <string.h>

#include "Update.h"
#include "esp_app_format.h"
#include "esp_ota_ops.h"

namespace {

const size_t SECTOR = 4096;
const size_t SKIP = 16;      // ENCRYPTED_BLOCK_SIZE: what is held back so that a half-written image cannot boot

const char* error_text(uint8_t error) {
    switch (error) {
        case UPDATE_ERROR_OK: return "No Error";
        case UPDATE_ERROR_WRITE: return "Flash Write Failed";
        case UPDATE_ERROR_ERASE: return "Flash Erase Failed";
        case UPDATE_ERROR_READ: return "Flash Read Failed";
        case UPDATE_ERROR_SPACE: return "Not Enough Space";
        case UPDATE_ERROR_SIZE: return "Bad Size Given";
        case UPDATE_ERROR_STREAM: return "Stream Read Timeout";
        case UPDATE_ERROR_MD5: return "MD5 Check Failed";
        case UPDATE_ERROR_MAGIC_BYTE: return "Wrong Magic Byte";
        case UPDATE_ERROR_ACTIVATE: return "Could Not Activate The Firmware";
        case UPDATE_ERROR_NO_PARTITION: return "Partition Could Not be Found";
        case UPDATE_ERROR_BAD_ARGUMENT: return "Bad Argument";
        case UPDATE_ERROR_ABORT: return "Aborted";
        case UPDATE_ERROR_DECRYPT: return "Decryption error";
        default: return "UNKNOWN";
    }
}

}  // namespace

UpdateClass::UpdateClass()
    : _error(0), _buffer(nullptr), _skipBuffer{}, _bufferLen(0), _size(0), _progress_callback(nullptr), _progress(0),
      _partition(nullptr) {}

UpdateClass& UpdateClass::onProgress(THandlerFunction_Progress fn) {
    _progress_callback = fn;
    return *this;
}

void UpdateClass::_reset() {
    free(_buffer);
    _buffer = nullptr;
    _bufferLen = 0;
    _progress = 0;
    _size = 0;
}

void UpdateClass::_abort(uint8_t err) {
    _reset();
    _error = err;
}

void UpdateClass::abort() { _abort(UPDATE_ERROR_ABORT); }

const char* UpdateClass::errorString() { return error_text(_error); }

bool UpdateClass::begin(size_t size, int command, int ledPin, uint8_t ledOn, const char* label) {
    (void)ledPin;
    (void)ledOn;
    (void)label;
    if (_size > 0) {
        log_w("already running");
        return false;
    }
    _reset();
    _error = 0;
    if (size == 0) {
        _error = UPDATE_ERROR_SIZE;
        return false;
    }
    if (command != U_FLASH) {
        _error = UPDATE_ERROR_BAD_ARGUMENT;
        log_e("bad command %u (the host runtime updates app slots only)", command);
        return false;
    }
    _partition = esp_ota_get_next_update_partition(NULL);
    if (!_partition) {
        _error = UPDATE_ERROR_NO_PARTITION;
        return false;
    }
    if (size == UPDATE_SIZE_UNKNOWN) {
        size = _partition->size;
    } else if (size > _partition->size) {
        _error = UPDATE_ERROR_SIZE;
        log_e("too large %u > %u", static_cast<unsigned>(size), static_cast<unsigned>(_partition->size));
        return false;
    }
    _buffer = static_cast<uint8_t*>(malloc(SECTOR));
    if (!_buffer) {
        log_e("malloc failed");
        return false;
    }
    _size = size;
    return true;
}

bool UpdateClass::_writeBuffer() {
    size_t skip = 0;
    if (!_progress) {
        if (_buffer[0] != ESP_IMAGE_HEADER_MAGIC) {
            _abort(UPDATE_ERROR_MAGIC_BYTE);
            return false;
        }
        skip = SKIP;                 // stashed, written by end(): a partly written image cannot boot
        memcpy(_skipBuffer, _buffer, SKIP);
        if (_progress_callback) _progress_callback(0, _size);
    }
    if (_progress % SECTOR == 0 && esp_partition_erase_range(_partition, _progress, SECTOR) != ESP_OK) {
        _abort(UPDATE_ERROR_ERASE);
        return false;
    }
    if (esp_partition_write(_partition, _progress + skip, _buffer + skip, _bufferLen - skip) != ESP_OK) {
        _abort(UPDATE_ERROR_WRITE);
        return false;
    }
    _progress += _bufferLen;
    _bufferLen = 0;
    if (_progress_callback) _progress_callback(_progress, _size);
    return true;
}

size_t UpdateClass::write(uint8_t* data, size_t len) {
    if (hasError() || !isRunning()) return 0;
    if (len > remaining()) {
        _abort(UPDATE_ERROR_SPACE);
        return 0;
    }
    size_t left = len;
    while (_bufferLen + left > SECTOR) {
        const size_t toBuff = SECTOR - _bufferLen;
        memcpy(_buffer + _bufferLen, data + (len - left), toBuff);
        _bufferLen += toBuff;
        if (!_writeBuffer()) return len - left;
        left -= toBuff;
    }
    memcpy(_buffer + _bufferLen, data + (len - left), left);
    _bufferLen += left;
    if (_bufferLen == remaining() && !_writeBuffer()) return len - left;
    return len;
}

bool UpdateClass::_verifyEnd() {
    uint8_t first[SKIP];
    if (esp_partition_write(_partition, 0, _skipBuffer, SKIP) != ESP_OK ||
        esp_partition_read(_partition, 0, first, SKIP) != ESP_OK || first[0] != ESP_IMAGE_HEADER_MAGIC) {
        _abort(UPDATE_ERROR_READ);
        return false;
    }
    if (esp_ota_set_boot_partition(_partition) != ESP_OK) {
        _abort(UPDATE_ERROR_ACTIVATE);
        return false;
    }
    _reset();
    return true;
}

bool UpdateClass::end(bool evenIfRemaining) {
    if (hasError() || _size == 0) return false;
    if (!isFinished() && !evenIfRemaining) {
        log_e("premature end: res:%u, pos:%u/%u", getError(), static_cast<unsigned>(progress()),
              static_cast<unsigned>(_size));
        _abort(UPDATE_ERROR_ABORT);
        return false;
    }
    if (evenIfRemaining) {
        if (_bufferLen > 0) _writeBuffer();
        _size = progress();
    }
    return _verifyEnd();
}

UpdateClass Update;
