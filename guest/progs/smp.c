/*
 * smp: every vCPU hammers shared counters, then vCPU 0 checks the totals.
 *   - a counter bumped with lock xadd,
 *   - a weighted counter (each vCPU adds cpu+1) with lock xadd,
 *   - a counter updated by a lock cmpxchg retry loop,
 *   - a plain counter protected by a lock-cmpxchg spinlock, whose critical
 *     section also checks that no other vCPU is inside it.
 * Prints one line per check from vCPU 0; exit 0 only if all hold.
 */
#include "rt.h"

#ifndef SMP_ITERS
#define SMP_ITERS 20000
#endif

static volatile uint64_t g_xadd;
static volatile uint64_t g_weighted;
static volatile uint64_t g_cas;
static rt_spinlock_t g_lock = RT_SPINLOCK_INIT;
static uint64_t g_locked;         /* guarded by g_lock */
static volatile uint32_t g_owner; /* guarded by g_lock: cpu+1 inside, 0 outside */
static volatile uint64_t g_overlaps;
static volatile uint64_t g_arrived;

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    rt_atomic_add(&g_arrived, 1);
    rt_barrier();

    for (uint64_t i = 0; i < SMP_ITERS; i++) {
        rt_atomic_add(&g_xadd, 1);
        rt_atomic_add(&g_weighted, cpu + 1);

        uint64_t old = g_cas;
        for (;;) {
            uint64_t seen = rt_cmpxchg(&g_cas, old, old + 1);
            if (seen == old)
                break;
            old = seen;
        }

        rt_spin_lock(&g_lock);
        if (g_owner != 0)
            rt_atomic_add(&g_overlaps, 1);
        g_owner = cpu + 1;
        uint64_t v = g_locked;
        /* A window for another vCPU to break in if the lock were broken. */
        for (volatile int k = 0; k < 3; k++)
            ;
        g_locked = v + 1;
        if (g_owner != cpu + 1)
            rt_atomic_add(&g_overlaps, 1);
        g_owner = 0;
        rt_spin_unlock(&g_lock);
    }

    rt_barrier();
    if (cpu != 0)
        return 0;

    uint64_t n = ncpu, total = n * SMP_ITERS;
    printf("smp: %u vCPUs x %u iterations\n", ncpu, (unsigned)SMP_ITERS);
    int bad = 0;
    bad |= rt_check("all vCPUs arrived", g_arrived == n);
    bad |= rt_check("lock xadd counter", g_xadd == total);
    bad |= rt_check("lock xadd weighted counter", g_weighted == (uint64_t)SMP_ITERS * n * (n + 1) / 2);
    bad |= rt_check("lock cmpxchg counter", g_cas == total);
    bad |= rt_check("spinlock counter", g_locked == total);
    bad |= rt_check("spinlock mutual exclusion", g_overlaps == 0);
    printf("smp: totals %llu %llu %llu %llu\n", (unsigned long long)g_xadd,
           (unsigned long long)g_weighted, (unsigned long long)g_cas, (unsigned long long)g_locked);
    printf("smp: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
