/*
 * phases: three named phases (GUEST-ABI 1.1, PHASE 0x110) whose memory
 * behaviour differs, so that the VMM's per-phase figures tell them apart:
 *
 *   fill     writes a pattern over PHASES_MIB MiB of memory never touched
 *            before (0 = half of guest RAM): zero-fill faults
 *   pageout  PAGEOUT over all of it: pages written to swap and freed
 *   verify   reads every word back and checks the pattern: swap-ins
 *
 * The memory is cut into one slice per vCPU. vCPU 0 names each phase while
 * every vCPU waits at a barrier, so no vCPU's work falls into the wrong
 * phase. The PHASE result is ignored: it only labels measurements, and a
 * VMM without PHASE answers -1000. Exit 0 when every word reads back as
 * written and every PAGEOUT is accepted; output is the same in the VM and
 * natively (PAGEOUT is madvise there, PHASE a no-op).
 */
#include "rt.h"

#ifndef PHASES_MIB
#define PHASES_MIB 0
#endif

/* Pattern round of the fill; any value works, it only has to match. */
#define ROUND 7

static volatile uint64_t g_mismatches;
static volatile uint64_t g_refused; /* PAGEOUT calls that returned an error */

/* vCPU 0 names the phase; the barrier keeps every vCPU out of it until then. */
static void enter_phase(unsigned cpu, const char *name)
{
    rt_barrier();
    if (cpu == 0)
        rt_phase(name);
    rt_barrier();
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    uint64_t total = PHASES_MIB ? (uint64_t)PHASES_MIB * RT_MIB : RT_ALIGN_DOWN(ram_bytes / 2, RT_MIB);
    uint64_t avail = RT_ALIGN_DOWN(rt_mem_size(), RT_MIB);
    if (total > avail)
        total = avail;
    uint64_t slice = RT_ALIGN_DOWN(total / ncpu, RT_PAGE);
    if (slice == 0) {
        if (cpu == 0)
            printf("phases: %llu bytes of memory is too little for %u vCPUs\n",
                   (unsigned long long)total, ncpu);
        return 1;
    }
    uint64_t words = slice / 8, first = words * cpu;
    volatile uint64_t *mem = rt_mem_base();
    if (cpu == 0)
        printf("phases: %llu KiB, %u vCPUs\n", (unsigned long long)(slice * ncpu / 1024), ncpu);

    enter_phase(cpu, "fill");
    rt_pattern_fill(mem, first, words, ROUND);

    enter_phase(cpu, "pageout");
    if (rt_pageout((void *)(mem + first), slice) < 0)
        rt_atomic_add(&g_refused, 1);

    enter_phase(cpu, "verify");
    rt_atomic_add(&g_mismatches, rt_pattern_verify(mem, first, words, ROUND));
    rt_barrier();

    if (cpu != 0)
        return 0;
    int bad = 0;
    bad |= rt_check("PAGEOUT accepted for every slice", g_refused == 0);
    bad |= rt_check("every word read back as written", g_mismatches == 0);
    if (g_mismatches != 0)
        printf("  %llu words differ\n", (unsigned long long)g_mismatches);
    printf("phases: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
