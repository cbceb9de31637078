/*
 * sparse: a guest that touches a thin, even spread of its RAM, so a large
 * guest on a small host runs with most of its memory never backed. It
 * writes four words into one page of every SPARSE_STRIDE (default 100: 1%
 * of free memory), pages each touched page out on its own and then all of
 * free memory at once, discards every fourth touched page, rewrites every
 * third, and after each step checks every touched page: the words it wrote
 * last, or zero after a discard. Single vCPU. Exit 0 when every check holds.
 */
#include "rt.h"

#ifndef SPARSE_STRIDE
#define SPARSE_STRIDE 100
#endif
/* Words written per touched page, 1 KiB apart. */
#define SPARSE_WORDS 4
#define SPARSE_GAP_WORDS (1024 / 8)

static volatile uint64_t *page_at(uint64_t i)
{
    return (volatile uint64_t *)((uint8_t *)rt_mem_base() + i * SPARSE_STRIDE * RT_PAGE);
}

static uint64_t value(uint64_t page, uint64_t word, uint64_t round)
{
    uint64_t x = (page * SPARSE_WORDS + word + 1) * 0x9E3779B97F4A7C15ull ^ round * 0xD1B54A32D192ED03ull;
    x ^= x >> 31;
    return x | 1; /* never zero: zero means "dropped" */
}

static void fill(uint64_t i, uint64_t round)
{
    volatile uint64_t *p = page_at(i);
    for (uint64_t w = 0; w < SPARSE_WORDS; w++)
        p[w * SPARSE_GAP_WORDS] = value(i, w, round);
}

/* What page i holds after step: 1 = written in round 1, 0 = discarded, 2 = rewritten. */
static uint64_t expected_round(uint64_t i, int step)
{
    if (step >= 2 && i % 3 == 0)
        return 2;
    if (step >= 1 && i % 4 == 0)
        return 0;
    return 1;
}

/* Touched pages that do not hold what step says they should. */
static uint64_t verify(uint64_t n, int step)
{
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        volatile uint64_t *p = page_at(i);
        uint64_t round = expected_round(i, step);
        for (uint64_t w = 0; w < SPARSE_WORDS; w++) {
            uint64_t want = round == 0 ? 0 : value(i, w, round);
            if (p[w * SPARSE_GAP_WORDS] != want) {
                bad++;
                break;
            }
        }
    }
    return bad;
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    uint8_t *base = rt_mem_base();
    uint64_t size = rt_mem_size() & ~(uint64_t)(RT_PAGE - 1);
    uint64_t n = size / RT_PAGE / SPARSE_STRIDE;
    if (n < 8) {
        printf("sparse: needs %u pages of free memory\n", (unsigned)(8 * SPARSE_STRIDE));
        return 1;
    }
    printf("sparse: one page in %u touched\n", (unsigned)SPARSE_STRIDE);
    int bad = 0;

    for (uint64_t i = 0; i < n; i++)
        fill(i, 1);
    bad |= rt_check("touched pages written", verify(n, 0) == 0);

    long worst = 0;
    for (uint64_t i = 0; i < n; i++) {
        long r = rt_pageout((void *)page_at(i), RT_PAGE);
        if (r < worst)
            worst = r;
    }
    bad |= rt_check("PAGEOUT of each touched page succeeds", worst == 0);
    bad |= rt_check("contents kept after page-outs", verify(n, 0) == 0);

    long r = rt_pageout(base, size);
    bad |= rt_check("PAGEOUT of all free memory succeeds", r >= 0);
    bad |= rt_check("contents kept after the whole page-out", verify(n, 0) == 0);

    worst = 0;
    for (uint64_t i = 0; i < n; i += 4) {
        long d = rt_discard((void *)page_at(i), RT_PAGE);
        if (d < worst)
            worst = d;
    }
    bad |= rt_check("DISCARD of every fourth page succeeds", worst == 0);
    bad |= rt_check("discarded pages read zero, the rest kept", verify(n, 1) == 0);

    for (uint64_t i = 0; i < n; i += 3)
        fill(i, 2);
    r = rt_pageout(base, size);
    bad |= rt_check("PAGEOUT after the rewrite succeeds", r >= 0);
    bad |= rt_check("rewritten, discarded and kept pages as expected", verify(n, 2) == 0);

    printf("sparse: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
