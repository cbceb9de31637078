/*
 * pageout: forced page-out keeps contents (GUEST-ABI.md, PAGEOUT 0x100).
 * Writes a pattern over PAGEOUT_MIB MiB of free memory, checks it, pages it
 * all out, checks it again (the reads swap it back in), writes fresh pages
 * beside it (the host hands them the frames the page-out freed) and checks
 * both (a secondary mapping left on a freed frame shows as the paged-out
 * region holding the fresh pages' data: memory corruption), rewrites half,
 * pages out a sub-range, and checks once more. Also checks that a
 * misaligned range gives -22 and that an unknown hypercall gives -1000.
 * Single vCPU (others return at once). Exit 0 when every check holds.
 */
#include "rt.h"

#ifndef PAGEOUT_MIB
#define PAGEOUT_MIB 4
#endif

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    uint64_t bytes = (uint64_t)PAGEOUT_MIB * RT_MIB;
    uint64_t fresh_bytes = bytes / 2;
    if (rt_mem_size() < bytes + fresh_bytes) {
        printf("pageout: needs %u MiB of free memory\n", (unsigned)(PAGEOUT_MIB + PAGEOUT_MIB / 2));
        return 1;
    }
    volatile uint64_t *mem = rt_mem_base();
    uint64_t words = bytes / 8, half = words / 2;
    printf("pageout: %u MiB region\n", (unsigned)PAGEOUT_MIB);
    int bad = 0;

    rt_pattern_fill(mem, 0, words, 1);
    bad |= rt_check("pattern written", rt_pattern_verify(mem, 0, words, 1) == 0);

    long r = rt_pageout((void *)mem, bytes);
    bad |= rt_check("PAGEOUT whole region succeeds", r >= 0 && (uint64_t)r <= bytes / RT_PAGE);
    bad |= rt_check("contents kept after PAGEOUT", rt_pattern_verify(mem, 0, words, 1) == 0);

    /* Pages never touched before, written right after the page-out: their frames are
       the ones it freed. Nothing may still reach those frames through the old pages. */
    uint64_t fresh = fresh_bytes / 8;
    rt_pattern_fill(mem, words, fresh, 3);
    uint64_t wrong = rt_pattern_verify(mem, 0, words, 1);
    bad |= rt_check("fresh pages written after PAGEOUT", rt_pattern_verify(mem, words, fresh, 3) == 0);
    bad |= rt_check("paged-out contents kept beside fresh pages", wrong == 0);
    if (wrong)
        printf("pageout: %llu of %llu words read back wrong: memory corruption\n",
               (unsigned long long)wrong, (unsigned long long)words);

    rt_pattern_fill(mem, half, words - half, 2);
    r = rt_pageout((void *)(mem + half), bytes / 2);
    bad |= rt_check("PAGEOUT second half succeeds", r >= 0);
    bad |= rt_check("first half kept", rt_pattern_verify(mem, 0, half, 1) == 0);
    bad |= rt_check("rewritten second half kept", rt_pattern_verify(mem, half, words - half, 2) == 0);

    r = rt_pageout((void *)mem, bytes);
    long r2 = rt_pageout((void *)mem, bytes);
    bad |= rt_check("PAGEOUT twice in a row succeeds", r >= 0 && r2 >= 0);
    bad |= rt_check("contents kept after double PAGEOUT",
                    rt_pattern_verify(mem, 0, half, 1) == 0 && rt_pattern_verify(mem, half, words - half, 2) == 0);

    r = rt_pageout((void *)((uintptr_t)mem + 8), RT_PAGE);
    bad |= rt_check("misaligned PAGEOUT gives -22", r == -22);
    r = rt_hypercall(0x7777, 0, 0, 0, 0);
    bad |= rt_check("unknown hypercall gives -1000", r == RT_HC_ENOSYS);

    printf("pageout: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
