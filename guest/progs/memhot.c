/*
 * memhot: hot/cold touching. Each vCPU's slice is cut into 8 windows; in
 * pass p window p % 8 is hot and takes 7 of every 8 touches, the rest go
 * anywhere in the slice (cold). Lines carry a per-line value whose pass
 * number is the last pass that wrote it, so a read checks the line is zero
 * or holds the value of some pass up to the current one. Exit 0 when every
 * read and the final sweep matched.
 */
#include "mem.h"

static volatile uint64_t g_totals[4]; /* wrong, hot touches, cold touches, written lines */

/* Which pass (0..pass) wrote v at off, or -1. */
static int64_t writer(uint64_t off, uint64_t v, uint64_t pass)
{
    for (uint64_t p = pass + 1; p-- > 0;)
        if (v == mem_value(off, p))
            return (int64_t)p;
    return -1;
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    struct mem_slice s;
    if (!mem_setup(cpu, ncpu, ram_bytes, &s))
        return 1;
    uint64_t off0 = (uint64_t)(s.base - (uint8_t *)rt_mem_base());
    uint64_t lines = s.bytes / MEM_STRIDE;
    uint64_t window = lines / 8 ? lines / 8 : 1;
    uint64_t per_pass = lines / 4;
    uint64_t seed = 0x407D0000ull + cpu;
    uint64_t wrong = 0, hot = 0, cold = 0, written = 0;

    for (uint64_t pass = 0; pass < MEM_PASSES; pass++) {
        uint64_t hot_first = (pass % 8) * window;
        for (uint64_t t = 0; t < per_pass; t++) {
            uint64_t r = rt_rand64(&seed);
            uint64_t line;
            if ((r & 7) != 7) {
                line = hot_first + (r >> 3) % window;
                hot++;
            } else {
                line = (r >> 3) % lines;
                cold++;
            }
            if (line >= lines)
                line = lines - 1;
            uint64_t off = line * MEM_STRIDE;
            volatile uint64_t *p = (volatile uint64_t *)(s.base + off);
            uint64_t v = *p;
            if (v != 0 && writer(off0 + off, v, pass) < 0)
                wrong++;
            *p = mem_value(off0 + off, pass);
        }
    }
    for (uint64_t line = 0; line < lines; line++) {
        uint64_t off = line * MEM_STRIDE;
        uint64_t v = *(volatile uint64_t *)(s.base + off);
        if (v) {
            written++;
            wrong += writer(off0 + off, v, MEM_PASSES - 1) < 0;
        }
    }

    uint64_t mine[4] = { wrong, hot, cold, written };
    mem_report(cpu, mine, g_totals, 4);
    if (cpu != 0)
        return wrong != 0;
    printf("memhot: %llu hot touches, %llu cold touches, %llu lines written\n",
           (unsigned long long)g_totals[1], (unsigned long long)g_totals[2],
           (unsigned long long)g_totals[3]);
    int bad = rt_check("every line as written", g_totals[0] == 0);
    printf("memhot: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
