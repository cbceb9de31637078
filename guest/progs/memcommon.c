#include "mem.h"

bool mem_setup(unsigned cpu, unsigned ncpu, uint64_t ram_bytes, struct mem_slice *s)
{
    uint64_t ws = MEM_WS_MIB ? (uint64_t)MEM_WS_MIB * RT_MIB : RT_ALIGN_DOWN(ram_bytes / 2, RT_MIB);
    uint64_t avail = RT_ALIGN_DOWN(rt_mem_size(), RT_MIB);
    if (ws > avail)
        ws = avail;
    uint64_t slice = RT_ALIGN_DOWN(ws / ncpu, RT_PAGE);
    if (slice < RT_PAGE) {
        if (cpu == 0)
            printf("working set too small: %llu bytes for %u vCPUs\n",
                   (unsigned long long)ws, ncpu);
        return false;
    }
    s->ws_bytes = slice * ncpu;
    s->bytes = slice;
    s->base = (uint8_t *)rt_mem_base() + slice * cpu;
    s->first_page = slice * cpu / RT_PAGE;
    if (cpu == 0)
        printf("working set: %llu KiB (%llu pages), %u vCPUs, %u passes\n",
               (unsigned long long)(s->ws_bytes / 1024), (unsigned long long)(s->ws_bytes / RT_PAGE),
               ncpu, (unsigned)MEM_PASSES);
    return true;
}

void mem_report(unsigned cpu, const uint64_t *values, volatile uint64_t *totals, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        rt_atomic_add(&totals[i], values[i]);
    rt_barrier();
}
