// WString.h (arduino-esp32 2.0.17 API) for the host runtime: String over std::string.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <string>

class __FlashStringHelper;
#define FPSTR(pstr_pointer) (reinterpret_cast<const __FlashStringHelper *>(pstr_pointer))
#define F(string_literal) (FPSTR(string_literal))

class String {
public:
    String() = default;
    String(const char *cstr) : s_(cstr ? cstr : "") {}
    String(const char *cstr, unsigned int length) : s_(cstr ? std::string(cstr, length) : std::string()) {}
    String(const String &) = default;
    String(String &&) = default;
    String(const __FlashStringHelper *str) : String(reinterpret_cast<const char *>(str)) {}
    explicit String(char c) : s_(1, c) {}
    explicit String(unsigned char value, unsigned char base = 10);
    explicit String(int value, unsigned char base = 10);
    explicit String(unsigned int value, unsigned char base = 10);
    explicit String(long value, unsigned char base = 10);
    explicit String(unsigned long value, unsigned char base = 10);
    explicit String(long long value, unsigned char base = 10);
    explicit String(unsigned long long value, unsigned char base = 10);
    explicit String(float value, unsigned int decimalPlaces = 2);
    explicit String(double value, unsigned int decimalPlaces = 2);
    ~String() = default;

    String &operator=(const String &) = default;
    String &operator=(String &&) = default;
    String &operator=(const char *cstr) {
        s_ = cstr ? cstr : "";
        return *this;
    }

    bool reserve(unsigned int size) {
        s_.reserve(size);
        return true;
    }
    unsigned int length() const { return static_cast<unsigned int>(s_.size()); }
    bool isEmpty() const { return s_.empty(); }
    const char *c_str() const { return s_.c_str(); }
    char *begin() { return &s_[0]; }
    char *end() { return &s_[0] + s_.size(); }
    const char *begin() const { return s_.c_str(); }
    const char *end() const { return s_.c_str() + s_.size(); }

    bool concat(const String &str) { s_ += str.s_; return true; }
    bool concat(const char *cstr) { if (!cstr) return false; s_ += cstr; return true; }
    bool concat(const char *cstr, unsigned int length) { if (!cstr) return false; s_.append(cstr, length); return true; }
    bool concat(char c) { s_ += c; return true; }
    bool concat(unsigned char num) { return concat(String(num)); }
    bool concat(int num) { return concat(String(num)); }
    bool concat(unsigned int num) { return concat(String(num)); }
    bool concat(long num) { return concat(String(num)); }
    bool concat(unsigned long num) { return concat(String(num)); }
    bool concat(long long num) { return concat(String(num)); }
    bool concat(unsigned long long num) { return concat(String(num)); }
    bool concat(float num) { return concat(String(num)); }
    bool concat(double num) { return concat(String(num)); }

    template <class T>
    String &operator+=(const T &rhs) {
        concat(rhs);
        return *this;
    }
    String &operator+=(const char *rhs) {
        concat(rhs);
        return *this;
    }

    explicit operator bool() const { return true; }
    bool equals(const String &s) const { return s_ == s.s_; }
    bool equals(const char *cstr) const { return cstr && s_ == cstr; }
    bool equalsIgnoreCase(const String &s) const;
    bool equalsConstantTime(const String &s) const { return equals(s); }
    int compareTo(const String &s) const { return s_.compare(s.s_); }
    bool operator==(const String &rhs) const { return equals(rhs); }
    bool operator==(const char *cstr) const { return equals(cstr); }
    bool operator!=(const String &rhs) const { return !equals(rhs); }
    bool operator!=(const char *cstr) const { return !equals(cstr); }
    bool operator<(const String &rhs) const { return s_ < rhs.s_; }
    bool operator>(const String &rhs) const { return s_ > rhs.s_; }
    bool operator<=(const String &rhs) const { return s_ <= rhs.s_; }
    bool operator>=(const String &rhs) const { return s_ >= rhs.s_; }
    bool startsWith(const String &prefix) const { return s_.compare(0, prefix.s_.size(), prefix.s_) == 0; }
    bool startsWith(const String &prefix, unsigned int offset) const {
        return offset <= s_.size() && s_.compare(offset, prefix.s_.size(), prefix.s_) == 0;
    }
    bool endsWith(const String &suffix) const {
        return s_.size() >= suffix.s_.size() && s_.compare(s_.size() - suffix.s_.size(), suffix.s_.size(), suffix.s_) == 0;
    }

    char charAt(unsigned int index) const { return index < s_.size() ? s_[index] : 0; }
    void setCharAt(unsigned int index, char c) { if (index < s_.size()) s_[index] = c; }
    char operator[](unsigned int index) const { return charAt(index); }
    char &operator[](unsigned int index) { return s_[index]; }
    void getBytes(unsigned char *buf, unsigned int bufsize, unsigned int index = 0) const;
    void toCharArray(char *buf, unsigned int bufsize, unsigned int index = 0) const {
        getBytes(reinterpret_cast<unsigned char *>(buf), bufsize, index);
    }

    int indexOf(char ch) const { return find_result(s_.find(ch)); }
    int indexOf(char ch, unsigned int fromIndex) const { return find_result(s_.find(ch, fromIndex)); }
    int indexOf(const String &str) const { return find_result(s_.find(str.s_)); }
    int indexOf(const String &str, unsigned int fromIndex) const { return find_result(s_.find(str.s_, fromIndex)); }
    int lastIndexOf(char ch) const { return find_result(s_.rfind(ch)); }
    int lastIndexOf(char ch, unsigned int fromIndex) const { return find_result(s_.rfind(ch, fromIndex)); }
    int lastIndexOf(const String &str) const { return find_result(s_.rfind(str.s_)); }
    int lastIndexOf(const String &str, unsigned int fromIndex) const { return find_result(s_.rfind(str.s_, fromIndex)); }
    String substring(unsigned int beginIndex) const {
        return beginIndex < s_.size() ? String(s_.substr(beginIndex).c_str()) : String();
    }
    String substring(unsigned int beginIndex, unsigned int endIndex) const;

    void replace(char find, char replace);
    void replace(const String &find, const String &replace);
    void remove(unsigned int index) { if (index < s_.size()) s_.erase(index); }
    void remove(unsigned int index, unsigned int count) { if (index < s_.size()) s_.erase(index, count); }
    void toLowerCase();
    void toUpperCase();
    void trim();
    void clear() { s_.clear(); }

    long toInt() const { return atol_(s_.c_str()); }
    float toFloat() const { return static_cast<float>(toDouble()); }
    double toDouble() const;

    const std::string &std() const { return s_; }

private:
    static int find_result(size_t pos) { return pos == std::string::npos ? -1 : static_cast<int>(pos); }
    static long atol_(const char *s);
    std::string s_;
};

String operator+(const String &lhs, const String &rhs);
String operator+(const String &lhs, const char *rhs);
String operator+(const char *lhs, const String &rhs);
String operator+(const String &lhs, char rhs);
String operator+(const String &lhs, unsigned char rhs);
String operator+(const String &lhs, int rhs);
String operator+(const String &lhs, unsigned int rhs);
String operator+(const String &lhs, long rhs);
String operator+(const String &lhs, unsigned long rhs);
String operator+(const String &lhs, long long rhs);
String operator+(const String &lhs, unsigned long long rhs);
String operator+(const String &lhs, float rhs);
String operator+(const String &lhs, double rhs);
inline bool operator==(const char *lhs, const String &rhs) { return rhs == lhs; }
inline bool operator!=(const char *lhs, const String &rhs) { return rhs != lhs; }
