/*
 * Run lifecycle shared by both backends: boot parameters, the end-of-run
 * protocol and the barrier.
 *
 * End of run (why vCPU 0 writes the exit port last):
 *
 *   vCPU k != 0                          vCPU 0
 *   rc = main(k, ...)                    rc = main(0, ...)
 *   record_status(rc)  (lock cmpxchg)    record_status(rc)
 *   lock xadd rt_done += 1  ------+      spin until rt_done == ncpu - 1
 *   cli; hlt (native: SYS_exit)   +----> out 0xF4, status (native: exit_group)
 *
 * The status store happens before the xadd on the same vCPU, and x86 keeps
 * stores in order, so once vCPU 0 sees the count it also sees every status.
 */
#include "rt.h"

static unsigned g_ncpu = 1;
static uint64_t g_ram;
static void *g_mem;
static uint64_t g_mem_size;

static volatile uint64_t g_status;   /* 0, or first non-zero status | 0x100 */
static volatile uint32_t g_done;     /* vCPUs other than 0 that finished */

static volatile uint32_t g_barrier_count;
static volatile uint32_t g_barrier_sense;

void rt_runtime_init(unsigned ncpu, uint64_t ram_bytes, void *mem, uint64_t mem_size)
{
    g_ncpu = ncpu ? ncpu : 1;
    g_ram = ram_bytes;
    g_mem = mem;
    g_mem_size = mem_size;
}

unsigned rt_ncpu(void) { return g_ncpu; }
void *rt_mem_base(void) { return g_mem; }
uint64_t rt_mem_size(void) { return g_mem_size; }

static int exit_byte(int rc)
{
    int st = rc & 0xFF;
    return (rc != 0 && st == 0) ? 1 : st;
}

_Noreturn void rt_finish(unsigned cpu, int rc)
{
    if (rc != 0)
        rt_cmpxchg(&g_status, 0, 0x100u | (unsigned)exit_byte(rc));
    if (cpu != 0) {
        rt_atomic_add32(&g_done, 1);
        rt_backend_cpu_stop();
    }
    while (g_done != g_ncpu - 1)
        rt_pause();
    int st = exit_byte(rc);
    if (st == 0)
        st = (int)(g_status & 0xFF);
    rt_backend_exit(st);
}

void rt_barrier(void)
{
    uint32_t sense = g_barrier_sense;
    if (rt_atomic_add32(&g_barrier_count, 1) == g_ncpu - 1) {
        g_barrier_count = 0;
        /* Pairs with the sense load below: the reset above is visible
         * before anyone leaves (TSO keeps the two stores in order). */
        g_barrier_sense = sense ^ 1;
    } else {
        while (g_barrier_sense == sense)
            rt_pause();
    }
}

int rt_check(const char *name, bool ok)
{
    printf("  %s: %s\n", name, ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}
