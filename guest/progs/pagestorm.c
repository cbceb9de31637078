/*
 * pagestorm: page-outs racing with guest writes. vCPU 0 pages the whole
 * region out again and again (PAGEOUT, contents kept) while every other
 * vCPU rewrites and re-checks its own 1 MiB slice STORM_ROUNDS times, one
 * word per 64-byte line. No word may ever read wrong: each page-out must
 * be ordered against the faults that bring pages back. With one vCPU,
 * vCPU 0 does both in turn. Exit 0 when every word was right.
 */
#include "rt.h"

#ifndef STORM_ROUNDS
#define STORM_ROUNDS 24
#endif
#define SLICE (1024 * 1024ull)
#define STRIDE 64

static volatile uint64_t g_workers_done;
static volatile uint64_t g_wrong;
static volatile uint64_t g_checked;
static volatile uint64_t g_pageout_errors;

static uint64_t value(uint64_t slice, uint64_t off, uint64_t round)
{
    uint64_t x = (slice + 1) * 0x9E3779B97F4A7C15ull ^ (off + 1) * 0xC2B2AE3D27D4EB4Full ^ round;
    return x ^ (x >> 33);
}

/* One round over a slice: check the previous round's values, write this one's. */
static void round_trip(volatile uint64_t *mem, uint64_t slice, uint64_t round,
                       uint64_t *wrong, uint64_t *checked)
{
    for (uint64_t off = 0; off < SLICE / 8; off += STRIDE / 8) {
        uint64_t expect = round ? value(slice, off, round - 1) : 0;
        *wrong += mem[off] != expect;
        mem[off] = value(slice, off, round);
        (*checked)++;
    }
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    unsigned workers = ncpu > 1 ? ncpu - 1 : 1;
    uint64_t region = workers * SLICE;
    if (rt_mem_size() < region) {
        if (cpu == 0)
            printf("pagestorm: needs %llu MiB of free memory\n", (unsigned long long)(region >> 20));
        return 1;
    }
    uint8_t *base = rt_mem_base();
    if (cpu == 0)
        printf("pagestorm: %u worker(s) x %u rounds over %llu MiB\n", workers,
               (unsigned)STORM_ROUNDS, (unsigned long long)(region >> 20));
    rt_barrier();

    uint64_t wrong = 0, checked = 0;
    if (ncpu == 1) {
        for (uint64_t r = 0; r < STORM_ROUNDS; r++) {
            round_trip((volatile uint64_t *)base, 0, r, &wrong, &checked);
            if (rt_pageout(base, region) < 0)
                rt_atomic_add(&g_pageout_errors, 1);
        }
        round_trip((volatile uint64_t *)base, 0, STORM_ROUNDS, &wrong, &checked);
    } else if (cpu == 0) {
        while (g_workers_done != workers)
            if (rt_pageout(base, region) < 0)
                rt_atomic_add(&g_pageout_errors, 1);
    } else {
        uint64_t slice = cpu - 1;
        volatile uint64_t *mem = (volatile uint64_t *)(base + slice * SLICE);
        for (uint64_t r = 0; r <= STORM_ROUNDS; r++)
            round_trip(mem, slice, r, &wrong, &checked);
        rt_atomic_add(&g_workers_done, 1);
    }
    rt_atomic_add(&g_wrong, wrong);
    rt_atomic_add(&g_checked, checked);
    rt_barrier();
    if (cpu != 0)
        return 0;

    printf("pagestorm: %llu words checked\n", (unsigned long long)g_checked);
    int bad = rt_check("every PAGEOUT succeeded", g_pageout_errors == 0);
    bad |= rt_check("every word as written", g_wrong == 0);
    if (g_wrong)
        printf("pagestorm: %llu wrong words\n", (unsigned long long)g_wrong);
    printf("pagestorm: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
