// Part of gen_link, gen's device runtime (plain source, the same in every project; see gen_link.h).
//
// The order of firmware versions, for anti-rollback: an update older than the running firmware is refused unless
// its announcement is a deliberate downgrade. Semantic Versioning 2.0 precedence, with a leading 'v' allowed and
// git describe's "N commits after a tag" understood (gen's default version is `git describe --tags --dirty`):
//
//     1.2.0-rc.1 < 1.2.0 < 1.2.0-3-gabc1234 < 1.2.0-4-gdef5678 < 1.2.1 < v1.10.0       (build metadata "+..." ignored)
//
// MAJOR, MINOR and PATCH have 1 to 9 digits. Anything else cannot be ordered: such an update passes only as a
// deliberate downgrade. generator/ota/version.py holds the same rules; a test runs both on the same pairs.
// Valid C and C++.
#ifndef VERSION_ORDER_H
#define VERSION_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define VERSION_NUMBER_DIGITS 9

typedef struct {
    unsigned long number[3];     // MAJOR, MINOR, PATCH
    int kind;                    // 0: a pre-release of that release, 1: the release, 2: commits after it
    const char *pre;             // kind 0: the pre-release identifiers (not NUL-terminated)
    size_t pre_length;
    unsigned long commits;       // kind 2: git describe's N
    bool dirty;                  // kind 2: "-dirty"
} version_parts_t;

static inline bool version_digits(const char **p, const char *end, unsigned long *out)
{
    const char *s = *p;
    unsigned long value = 0;
    size_t digits = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        if (++digits > VERSION_NUMBER_DIGITS) {
            return false;
        }
        value = value * 10 + (unsigned long)(*s - '0');
        ++s;
    }
    *out = value;
    *p = s;
    return digits > 0;
}

// Dot-separated identifiers of [0-9A-Za-z-], none empty.
static inline bool version_identifiers_valid(const char *s, const char *end)
{
    bool empty = true;
    for (; s < end; ++s) {
        const char c = *s;
        if (c == '.') {
            if (empty) {
                return false;
            }
            empty = true;
        } else if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-') {
            empty = false;
        } else {
            return false;
        }
    }
    return !empty;
}

// git describe's suffix: "N-gHASH" (4 to 40 lowercase hex digits), optionally "-dirty", or "dirty" alone.
static inline bool version_describe_suffix(const char *s, const char *end, unsigned long *commits, bool *dirty)
{
    if (end - s == 5 && memcmp(s, "dirty", 5) == 0) {
        *commits = 0;
        *dirty = true;
        return true;
    }
    if (!version_digits(&s, end, commits) || end - s < 2 || s[0] != '-' || s[1] != 'g') {
        return false;
    }
    s += 2;
    const char *hash = s;
    while (s < end && ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) {
        ++s;
    }
    if (s - hash < 4 || s - hash > 40) {
        return false;
    }
    *dirty = end - s == 6 && memcmp(s, "-dirty", 6) == 0;
    return s == end || *dirty;
}

static inline bool version_parse(const char *text, version_parts_t *out)
{
    const char *s = text;
    const char *end = text + strlen(text);
    memset(out, 0, sizeof *out);
    if (s < end && *s == 'v') {
        ++s;
    }
    for (int i = 0; i < 3; ++i) {
        if (i > 0 && (s >= end || *s++ != '.')) {
            return false;
        }
        if (!version_digits(&s, end, &out->number[i])) {
            return false;
        }
    }
    const char *build = (const char *)memchr(s, '+', (size_t)(end - s));
    if (build != NULL && !version_identifiers_valid(build + 1, end)) {
        return false;
    }
    const char *stop = build != NULL ? build : end;
    out->kind = 1;
    if (s == stop) {
        return true;
    }
    if (*s++ != '-' || !version_identifiers_valid(s, stop)) {
        return false;
    }
    if (version_describe_suffix(s, stop, &out->commits, &out->dirty)) {
        out->kind = 2;
        return true;
    }
    out->kind = 0;
    out->pre = s;
    out->pre_length = (size_t)(stop - s);
    return true;
}

static inline int version_compare_numbers(unsigned long a, unsigned long b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

// Pre-release identifiers, as SemVer 2.0 orders them: numeric ones by value, below alphanumeric ones (by ASCII);
// a shorter list of equal identifiers first.
static inline int version_compare_prerelease(const char *a, size_t a_length, const char *b, size_t b_length)
{
    const char *a_end = a + a_length;
    const char *b_end = b + b_length;
    while (a < a_end && b < b_end) {
        const char *a_dot = (const char *)memchr(a, '.', (size_t)(a_end - a));
        const char *b_dot = (const char *)memchr(b, '.', (size_t)(b_end - b));
        const size_t an = (size_t)((a_dot != NULL ? a_dot : a_end) - a);
        const size_t bn = (size_t)((b_dot != NULL ? b_dot : b_end) - b);
        const bool a_numeric = strspn(a, "0123456789") >= an;
        const bool b_numeric = strspn(b, "0123456789") >= bn;
        int order;
        if (a_numeric && b_numeric) {
            const char *x = a, *y = b;
            size_t xn = an, yn = bn;
            while (xn > 1 && *x == '0') {
                ++x;
                --xn;
            }
            while (yn > 1 && *y == '0') {
                ++y;
                --yn;
            }
            order = xn != yn ? (xn < yn ? -1 : 1) : memcmp(x, y, xn);
        } else if (a_numeric != b_numeric) {
            order = a_numeric ? -1 : 1;
        } else {
            const int common = memcmp(a, b, an < bn ? an : bn);
            order = common != 0 ? common : (an < bn ? -1 : an > bn ? 1 : 0);
        }
        if (order != 0) {
            return order < 0 ? -1 : 1;
        }
        a += an + (a_dot != NULL ? 1 : 0);
        b += bn + (b_dot != NULL ? 1 : 0);
        if ((a_dot != NULL) != (b_dot != NULL)) {
            return a_dot != NULL ? 1 : -1;       // the one with more identifiers is later
        }
        if (a_dot == NULL) {
            return 0;
        }
    }
    return 0;
}

// true when both versions can be ordered; then *order is -1 (a before b), 0 (same precedence) or 1.
static inline bool version_order(const char *a, const char *b, int *order)
{
    version_parts_t x, y;
    if (!version_parse(a, &x) || !version_parse(b, &y)) {
        return false;
    }
    *order = 0;
    for (int i = 0; i < 3 && *order == 0; ++i) {
        *order = version_compare_numbers(x.number[i], y.number[i]);
    }
    if (*order == 0) {
        *order = version_compare_numbers((unsigned long)x.kind, (unsigned long)y.kind);
    }
    if (*order == 0 && x.kind == 0) {
        *order = version_compare_prerelease(x.pre, x.pre_length, y.pre, y.pre_length);
    }
    if (*order == 0 && x.kind == 2) {
        *order = version_compare_numbers(x.commits, y.commits);
        if (*order == 0) {
            *order = version_compare_numbers((unsigned long)x.dirty, (unsigned long)y.dirty);
        }
    }
    return true;
}

// Why an update of version `offered` must not replace the running `running`, or NULL: an older version, or one
// that cannot be ordered, passes only as a deliberate downgrade (`downgrade`: the announcement's permission verified,
// ota_common.h).
static inline const char *version_rollback_problem(const char *offered, const char *running, bool downgrade)
{
    int order = 0;
    if (downgrade) {
        return NULL;
    }
    if (!version_order(offered, running, &order)) {
        return "its version and the running one cannot be ordered (MAJOR.MINOR.PATCH expected)";
    }
    return order < 0 ? "it is older than the running version" : NULL;
}

#endif
