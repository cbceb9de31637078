/*
 * memseq: sequential touching. Each vCPU sweeps its slice of the working set
 * MEM_PASSES times, one 8-byte word per 64-byte line, forwards on even
 * passes and backwards on odd ones. Pass 0 checks that fresh memory reads
 * zero; every later pass checks the previous pass's values before writing
 * its own; a final sweep checks the last pass and sums the values.
 * Exit 0 when no word was wrong.
 */
#include "mem.h"

static volatile uint64_t g_totals[3]; /* wrong words, checksum, words checked */

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    struct mem_slice s;
    if (!mem_setup(cpu, ncpu, ram_bytes, &s))
        return 1;
    uint64_t off0 = (uint64_t)(s.base - (uint8_t *)rt_mem_base());
    uint64_t lines = s.bytes / MEM_STRIDE;
    uint64_t wrong = 0, sum = 0, checked = 0;

    for (uint64_t pass = 0; pass < MEM_PASSES; pass++) {
        for (uint64_t i = 0; i < lines; i++) {
            uint64_t line = (pass & 1) ? lines - 1 - i : i;
            uint64_t off = line * MEM_STRIDE;
            volatile uint64_t *p = (volatile uint64_t *)(s.base + off);
            uint64_t expect = pass ? mem_value(off0 + off, pass - 1) : 0;
            wrong += *p != expect;
            *p = mem_value(off0 + off, pass);
        }
        checked += lines;
    }
    for (uint64_t line = 0; line < lines; line++) {
        uint64_t off = line * MEM_STRIDE;
        uint64_t v = *(volatile uint64_t *)(s.base + off);
        wrong += v != mem_value(off0 + off, MEM_PASSES - 1);
        sum += v;
    }
    checked += lines;

    uint64_t mine[3] = { wrong, sum, checked };
    mem_report(cpu, mine, g_totals, 3);
    if (cpu != 0)
        return wrong != 0;
    printf("memseq: %llu words checked, checksum %016llx\n",
           (unsigned long long)g_totals[2], (unsigned long long)g_totals[1]);
    int bad = rt_check("every word as written", g_totals[0] == 0);
    if (g_totals[0])
        printf("memseq: %llu wrong words\n", (unsigned long long)g_totals[0]);
    printf("memseq: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
