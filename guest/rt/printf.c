/*
 * printf family: %d %i %u %x %X %o %c %s %p %%, flags '-' '0' '+' ' ' '#',
 * width and precision (also '*'), lengths hh h l ll z j t.
 * Output goes through a 128-byte buffer to rt_console_write (printf) or to a
 * caller's buffer (snprintf). printf holds the console lock for the whole
 * call so lines from different vCPUs never interleave.
 */
#include "rt.h"

struct sink {
    char *buf;      /* snprintf target, or NULL for the console */
    size_t cap;     /* snprintf capacity */
    size_t len;     /* characters produced so far */
    char tmp[128];  /* console staging buffer */
    size_t tmp_len;
};

static void sink_flush(struct sink *s)
{
    if (!s->buf && s->tmp_len) {
        rt_console_write(s->tmp, s->tmp_len);
        s->tmp_len = 0;
    }
}

static void sink_put(struct sink *s, char c)
{
    if (s->buf) {
        if (s->len + 1 < s->cap)
            s->buf[s->len] = c;
    } else {
        if (s->tmp_len == sizeof s->tmp)
            sink_flush(s);
        s->tmp[s->tmp_len++] = c;
    }
    s->len++;
}

static void sink_pad(struct sink *s, char c, int n)
{
    while (n-- > 0)
        sink_put(s, c);
}

enum { F_LEFT = 1, F_ZERO = 2, F_PLUS = 4, F_SPACE = 8, F_ALT = 16 };

static void put_number(struct sink *s, uint64_t v, bool neg, unsigned base, bool upper,
                       int flags, int width, int prec, const char *prefix)
{
    char digits[24];
    int n = 0;
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    if (v == 0 && prec != 0)
        digits[n++] = '0';
    while (v) {
        digits[n++] = set[v % base];
        v /= base;
    }
    char sign = neg ? '-' : (flags & F_PLUS) ? '+' : (flags & F_SPACE) ? ' ' : 0;
    int zeros = prec > n ? prec - n : 0;
    int plen = prefix ? (int)strlen(prefix) : 0;
    int total = n + zeros + (sign ? 1 : 0) + plen;
    if ((flags & F_ZERO) && !(flags & F_LEFT) && prec < 0 && width > total) {
        zeros += width - total;
        total = width;
    }
    if (!(flags & F_LEFT))
        sink_pad(s, ' ', width - total);
    if (sign)
        sink_put(s, sign);
    for (int i = 0; i < plen; i++)
        sink_put(s, prefix[i]);
    sink_pad(s, '0', zeros);
    while (n)
        sink_put(s, digits[--n]);
    if (flags & F_LEFT)
        sink_pad(s, ' ', width - total);
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_put(s, *fmt);
            continue;
        }
        fmt++;
        int flags = 0;
        for (;; fmt++) {
            if (*fmt == '-') flags |= F_LEFT;
            else if (*fmt == '0') flags |= F_ZERO;
            else if (*fmt == '+') flags |= F_PLUS;
            else if (*fmt == ' ') flags |= F_SPACE;
            else if (*fmt == '#') flags |= F_ALT;
            else break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) { flags |= F_LEFT; width = -width; }
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        int prec = -1;
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
            }
        }
        int len = 0; /* -2 hh, -1 h, 0 int, 1 long, 2 long long */
        for (;; fmt++) {
            if (*fmt == 'h') len--;
            else if (*fmt == 'l') len++;
            else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't') len = 2;
            else break;
        }
        char c = *fmt;
        if (!c)
            break;
        switch (c) {
        case 'd':
        case 'i': {
            int64_t v;
            if (len >= 1) v = va_arg(ap, long long);
            else v = va_arg(ap, int);
            if (len == -1) v = (short)v;
            if (len <= -2) v = (signed char)v;
            bool neg = v < 0;
            put_number(s, neg ? 0 - (uint64_t)v : (uint64_t)v, neg, 10, false, flags, width, prec, NULL);
            break;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
            uint64_t v;
            if (len >= 1) v = va_arg(ap, unsigned long long);
            else v = va_arg(ap, unsigned int);
            if (len == -1) v = (unsigned short)v;
            if (len <= -2) v = (unsigned char)v;
            unsigned base = c == 'u' ? 10 : c == 'o' ? 8 : 16;
            const char *prefix = NULL;
            if ((flags & F_ALT) && v != 0)
                prefix = c == 'x' ? "0x" : c == 'X' ? "0X" : c == 'o' ? "0" : NULL;
            put_number(s, v, false, base, c == 'X', flags & ~(F_PLUS | F_SPACE), width, prec, prefix);
            break;
        }
        case 'p':
            put_number(s, (uint64_t)(uintptr_t)va_arg(ap, void *), false, 16, false,
                       flags & ~(F_PLUS | F_SPACE), width, prec, "0x");
            break;
        case 'c':
            if (!(flags & F_LEFT)) sink_pad(s, ' ', width - 1);
            sink_put(s, (char)va_arg(ap, int));
            if (flags & F_LEFT) sink_pad(s, ' ', width - 1);
            break;
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str) str = "(null)";
            int n = 0;
            while (str[n] && (prec < 0 || n < prec)) n++;
            if (!(flags & F_LEFT)) sink_pad(s, ' ', width - n);
            for (int i = 0; i < n; i++) sink_put(s, str[i]);
            if (flags & F_LEFT) sink_pad(s, ' ', width - n);
            break;
        }
        case '%':
            sink_put(s, '%');
            break;
        default: /* unknown conversion: print it verbatim */
            sink_put(s, '%');
            sink_put(s, c);
            break;
        }
    }
}

static rt_spinlock_t g_console_lock = RT_SPINLOCK_INIT;

int vprintf(const char *fmt, va_list ap)
{
    struct sink s;
    s.buf = NULL;
    s.cap = 0;
    s.len = 0;
    s.tmp_len = 0;
    rt_spin_lock(&g_console_lock);
    format(&s, fmt, ap);
    sink_flush(&s);
    rt_spin_unlock(&g_console_lock);
    return (int)s.len;
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap)
{
    struct sink s;
    s.buf = buf;
    s.cap = n;
    s.len = 0;
    s.tmp_len = 0;
    format(&s, fmt, ap);
    if (n)
        buf[s.len < n ? s.len : n - 1] = 0;
    return (int)s.len;
}

int snprintf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

void puts(const char *s)
{
    printf("%s\n", s);
}
