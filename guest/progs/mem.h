/*
 * Shared set-up of the memory guests (memseq, memrand, memhot).
 *
 * The working set is MEM_WS_MIB MiB of free memory, or (MEM_WS_MIB = 0,
 * the default) half of guest RAM rounded down to 1 MiB, capped at the free
 * memory. It is split into one equal slice per vCPU so several vCPUs fault
 * pages in at once. The value at a location depends only on its position
 * and the pass, so every check is exact and the output identical between
 * the VM and a native run with the same vCPUs and RAM.
 */
#ifndef TOYVMM_MEM_H
#define TOYVMM_MEM_H
#include "rt.h"

#ifndef MEM_WS_MIB
#define MEM_WS_MIB 0
#endif
#ifndef MEM_PASSES
#define MEM_PASSES 4
#endif
/* Bytes between two touched words: one per 64-byte line. */
#define MEM_STRIDE 64

struct mem_slice {
    uint8_t *base;      /* this vCPU's slice */
    uint64_t bytes;     /* slice size, whole pages */
    uint64_t first_page;/* index of the slice's first page in the working set */
    uint64_t ws_bytes;  /* whole working set */
};

/* Chooses the working set and this vCPU's slice; vCPU 0 prints its size.
 * Returns false (after printing why) when RAM is too small. */
bool mem_setup(unsigned cpu, unsigned ncpu, uint64_t ram_bytes, struct mem_slice *s);

/* The value stored at byte offset off of the working set in pass pass. */
static inline uint64_t mem_value(uint64_t off, uint64_t pass)
{
    uint64_t x = (off + 1) * 0x9E3779B97F4A7C15ull ^ (pass + 1) * 0xD1B54A32D192ED03ull;
    x ^= x >> 29;
    return x | 1; /* never zero: zero means "never written" */
}

/* Adds this vCPU's results into the run's totals (lock xadd); vCPU 0 gets
 * the sums after a barrier. */
void mem_report(unsigned cpu, const uint64_t *values, volatile uint64_t *totals, unsigned n);

#endif
