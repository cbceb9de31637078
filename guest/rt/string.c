/*
 * String and memory primitives. Built with -fno-tree-loop-distribute-patterns
 * (see Makefile) so gcc does not turn these loops back into calls to
 * themselves.
 */
#include "rt.h"

void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    uint64_t v = (unsigned char)c * 0x0101010101010101ull;
    while (n && ((uintptr_t)p & 7)) { *p++ = (unsigned char)c; n--; }
    for (; n >= 8; n -= 8, p += 8)
        *(volatile uint64_t *)p = v;
    while (n--) *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *restrict d, const void *restrict s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if ((((uintptr_t)dp | (uintptr_t)sp) & 7) == 0) {
        for (; n >= 8; n -= 8, dp += 8, sp += 8)
            *(volatile uint64_t *)dp = *(const uint64_t *)sp;
    }
    while (n--) *dp++ = *sp++;
    return d;
}

void *memmove(void *d, const void *s, size_t n)
{
    unsigned char *dp = d;
    const unsigned char *sp = s;
    if (dp == sp || n == 0)
        return d;
    if (dp < sp || dp >= sp + n)
        return memcpy(d, s, n);
    /* Overlap with d above s: copy backwards. */
    dp += n;
    sp += n;
    while (n--) *--dp = *--sp;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x < *y ? -1 : 1;
    return 0;
}

size_t strlen(const char *s)
{
    const char *p = s;
    while (*p) p++;
    return (size_t)(p - s);
}

int strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) { a++; b++; }
    return (unsigned char)*a < (unsigned char)*b ? -1 : (unsigned char)*a > (unsigned char)*b;
}
