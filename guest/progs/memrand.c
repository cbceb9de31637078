/*
 * memrand: random touching. Each vCPU picks lines of its slice at random
 * (xorshift64*, seed fixed per vCPU) and writes each line's own value; a
 * read that finds a line neither zero nor its value is an error. A final
 * sweep counts the written lines, which must equal the number of first
 * touches seen. Exit 0 when everything matched.
 */
#include "mem.h"

static volatile uint64_t g_totals[4]; /* wrong, first touches, re-touches, written lines */

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    struct mem_slice s;
    if (!mem_setup(cpu, ncpu, ram_bytes, &s))
        return 1;
    uint64_t off0 = (uint64_t)(s.base - (uint8_t *)rt_mem_base());
    uint64_t lines = s.bytes / MEM_STRIDE;
    uint64_t touches = lines * MEM_PASSES / 8;
    uint64_t seed = 0x5EED0000ull + cpu;
    uint64_t wrong = 0, first = 0, again = 0, written = 0;

    for (uint64_t t = 0; t < touches; t++) {
        uint64_t off = (rt_rand64(&seed) % lines) * MEM_STRIDE;
        volatile uint64_t *p = (volatile uint64_t *)(s.base + off);
        uint64_t v = *p, want = mem_value(off0 + off, 0);
        if (v == 0) {
            first++;
            *p = want;
        } else if (v == want) {
            again++;
        } else {
            wrong++;
        }
    }
    for (uint64_t line = 0; line < lines; line++) {
        uint64_t off = line * MEM_STRIDE;
        uint64_t v = *(volatile uint64_t *)(s.base + off);
        if (v) {
            written++;
            wrong += v != mem_value(off0 + off, 0);
        }
    }

    uint64_t mine[4] = { wrong, first, again, written };
    mem_report(cpu, mine, g_totals, 4);
    if (cpu != 0)
        return wrong != 0;
    printf("memrand: %llu first touches, %llu re-touches\n",
           (unsigned long long)g_totals[1], (unsigned long long)g_totals[2]);
    int bad = rt_check("every line as written", g_totals[0] == 0);
    bad |= rt_check("written lines == first touches", g_totals[3] == g_totals[1]);
    printf("memrand: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
