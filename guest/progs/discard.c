/*
 * discard: DISCARD drops contents (GUEST-ABI.md, DISCARD 0x101).
 * Writes a pattern over DISCARD_MIB MiB, discards the middle half, checks
 * the middle reads zero and the rest kept its pattern, writes the middle
 * again and checks it, discards everything and checks it all reads zero.
 * A misaligned range gives -22. Single vCPU. Exit 0 when every check holds.
 */
#include "rt.h"

#ifndef DISCARD_MIB
#define DISCARD_MIB 4
#endif

static uint64_t count_zero(volatile uint64_t *m, uint64_t first, uint64_t n)
{
    uint64_t ok = 0;
    for (uint64_t i = first; i < first + n; i++)
        ok += m[i] == 0;
    return ok;
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    uint64_t bytes = (uint64_t)DISCARD_MIB * RT_MIB;
    if (rt_mem_size() < bytes) {
        printf("discard: needs %u MiB of free memory\n", (unsigned)DISCARD_MIB);
        return 1;
    }
    volatile uint64_t *m = rt_mem_base();
    uint64_t words = bytes / 8, q = words / 4;
    printf("discard: %u MiB region\n", (unsigned)DISCARD_MIB);
    int bad = 0;

    rt_pattern_fill(m, 0, words, 1);
    bad |= rt_check("pattern written", rt_pattern_verify(m, 0, words, 1) == 0);

    long r = rt_discard((void *)(m + q), bytes / 2);
    bad |= rt_check("DISCARD middle half succeeds", r >= 0 && (uint64_t)r <= bytes / 2 / RT_PAGE);
    bad |= rt_check("middle half reads zero", count_zero(m, q, 2 * q) == 2 * q);
    bad |= rt_check("outer quarters kept",
                    rt_pattern_verify(m, 0, q, 1) == 0 && rt_pattern_verify(m, 3 * q, words - 3 * q, 1) == 0);

    rt_pattern_fill(m, q, 2 * q, 1);
    bad |= rt_check("middle half rewritten", rt_pattern_verify(m, 0, words, 1) == 0);

    r = rt_discard((void *)m, bytes);
    bad |= rt_check("DISCARD whole region succeeds", r >= 0);
    bad |= rt_check("whole region reads zero", count_zero(m, 0, words) == words);

    r = rt_discard((void *)((uintptr_t)m + 64), RT_PAGE);
    bad |= rt_check("misaligned DISCARD gives -22", r == -22);

    printf("discard: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
