/*
 * grants: XPMEM-style grants between VMs (GUEST-ABI 1.1, 0x102-0x105).
 * Run alone, or as several VMs of one host (toyvmm run grants.elf grants.elf):
 * each VM tries to make the grant under one key; the one that gets it is the
 * owner, a VM that gets -17 attaches it and becomes the user. Owner and user
 * then count into shared words with lock xadd and lock cmpxchg, check each
 * other's patterns, page the shared pages out from both sides, and the user
 * checks that its range reads as zero once the owner removed the grant. An
 * owner that nobody joins within two seconds (run alone) attaches its own grant
 * as a second view and checks the same through it, with every error code of
 * the ABI. vCPU 0 does the work. Exit 0 when every check holds; natively
 * (no grants) it says so and exits 0.
 */
#include "rt.h"

#define HC_MAKE 0x102
#define HC_ATTACH 0x103
#define HC_DETACH 0x104
#define HC_REMOVE 0x105
#define KEY 0x6772616e74ULL              /* "grant" */
#define GRANT_BYTES (64 * RT_PAGE)
#define ROUNDS 50000
#define WAIT_NS 2000000000ULL

/* The grant's first page: the handshake and the counters. */
enum { W_MAGIC, W_ARRIVED, W_XADD, W_CAS, W_USER_DONE, W_OWNER_DONE };
#define MAGIC 0x4f574e4552ULL            /* "OWNER" */
#define CLOSED 99
#define DATA_WORDS (GRANT_BYTES / 8)

static void count(volatile uint64_t *w, unsigned rounds)
{
    for (unsigned i = 0; i < rounds; i++) {
        rt_atomic_add(&w[W_XADD], 1);
        uint64_t old;
        do old = w[W_CAS]; while (rt_cmpxchg(&w[W_CAS], old, old + 1) != old);
    }
}

static int wait_for(volatile uint64_t *w, int word, uint64_t value, uint64_t ns)
{
    uint64_t t0 = rt_rdtsc();
    while (w[word] != value)
        if (rt_rdtsc() - t0 > ns) return 0;
    return 1;
}

/* Pattern of one side over half the data pages (page 1 on). */
static uint64_t pat(int side, uint64_t i) { return (i * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)side; }

static int fill_check(volatile uint64_t *w, int side, int check)
{
    uint64_t lo = 512 + (side ? (DATA_WORDS - 512) / 2 : 0), n = (DATA_WORDS - 512) / 2, bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (check) bad += w[lo + i] != pat(side, i);
        else w[lo + i] = pat(side, i);
    }
    return bad == 0;
}

static int as_user(uint8_t *base)
{
    volatile uint64_t *w = (volatile uint64_t *)(base + 2 * RT_MIB);
    int bad = 0;
    long r = rt_hypercall(HC_ATTACH, KEY, GRANT_BYTES, (uint64_t)(uintptr_t)w, 0);
    if (r == -2) {   /* the owner has gone already: nothing to share */
        printf("grants: the owner had gone; nothing shared\n");
        return 0;
    }
    bad |= rt_check("user: GRANT_ATTACH succeeds", r == 0);
    if (r != 0) return 1;
    if (!wait_for(w, W_MAGIC, MAGIC, WAIT_NS) || rt_cmpxchg(&w[W_ARRIVED], 0, 1) != 0) {
        printf("grants: the owner stopped waiting; nothing shared\n");
        rt_hypercall(HC_DETACH, (uint64_t)(uintptr_t)w, GRANT_BYTES, 0, 0);
        return 0;
    }
    printf("grants: user attached the grant of another VM\n");
    count(w, ROUNDS);
    fill_check(w, 1, 0);
    bad |= rt_check("user: the owner's pattern is visible", fill_check(w, 0, 1));
    bad |= rt_check("user: PAGEOUT of the attached range pages out", rt_pageout((void *)w, GRANT_BYTES) >= 0);
    bad |= rt_check("user: DISCARD of the attached range gives -22", rt_discard((void *)w, GRANT_BYTES) == -22);
    bad |= rt_check("user: contents kept after its PAGEOUT", fill_check(w, 0, 1) && fill_check(w, 1, 1));
    rt_atomic_add(&w[W_USER_DONE], 1);
    /* The owner checks the totals, then removes the grant: the range reads as zero. */
    bad |= rt_check("user: the owner finished", wait_for(w, W_MAGIC, 0, 10 * WAIT_NS));
    uint64_t nonzero = 0;
    for (uint64_t i = 0; i < DATA_WORDS; i++) nonzero += w[i] != 0;
    bad |= rt_check("user: after GRANT_REMOVE the range is zero", nonzero == 0);
    bad |= rt_check("user: DETACH after the removal gives -22",
                    rt_hypercall(HC_DETACH, (uint64_t)(uintptr_t)w, GRANT_BYTES, 0, 0) == -22);
    return bad;
}

static int alone(uint8_t *base, volatile uint64_t *g)
{
    int bad = 0;
    volatile uint64_t *v = (volatile uint64_t *)(base + RT_MIB);
    printf("grants: nobody joined; checking through a second view\n");
    bad |= rt_check("GRANT_ATTACH of an unknown key gives -2", rt_hypercall(HC_ATTACH, KEY + 1, RT_PAGE, (uint64_t)(uintptr_t)v, 0) == -2);
    bad |= rt_check("GRANT_ATTACH larger than the grant gives -22", rt_hypercall(HC_ATTACH, KEY, GRANT_BYTES + RT_PAGE, (uint64_t)(uintptr_t)v, 0) == -22);
    bad |= rt_check("GRANT_ATTACH of a misaligned range gives -22", rt_hypercall(HC_ATTACH, KEY, RT_PAGE, (uint64_t)(uintptr_t)v + 8, 0) == -22);
    bad |= rt_check("GRANT_ATTACH of its own grant succeeds", rt_hypercall(HC_ATTACH, KEY, GRANT_BYTES, (uint64_t)(uintptr_t)v, 0) == 0);
    bad |= rt_check("GRANT_ATTACH over an attachment gives -16", rt_hypercall(HC_ATTACH, KEY, RT_PAGE, (uint64_t)(uintptr_t)v + RT_PAGE, 0) == -16);
    bad |= rt_check("the second view sees the first's pattern", fill_check(v, 0, 1));
    count(v, ROUNDS);
    count(g, ROUNDS);
    bad |= rt_check("lock xadd through both views counts once each", g[W_XADD] == 2ULL * ROUNDS && v[W_XADD] == 2ULL * ROUNDS);
    bad |= rt_check("lock cmpxchg through both views counts once each", g[W_CAS] == 2ULL * ROUNDS);
    fill_check(v, 1, 0);
    bad |= rt_check("stores through the view are the owner's", fill_check(g, 1, 1));
    bad |= rt_check("PAGEOUT through the view succeeds", rt_pageout((void *)v, GRANT_BYTES) >= 0);
    bad |= rt_check("DISCARD through the view gives -22", rt_discard((void *)v, GRANT_BYTES) == -22);
    bad |= rt_check("contents kept after the PAGEOUT", fill_check(g, 0, 1) && fill_check(v, 1, 1));
    bad |= rt_check("GRANT_DETACH of a range not attached gives -22", rt_hypercall(HC_DETACH, (uint64_t)(uintptr_t)v, RT_PAGE, 0, 0) == -22);
    bad |= rt_check("GRANT_DETACH succeeds", rt_hypercall(HC_DETACH, (uint64_t)(uintptr_t)v, GRANT_BYTES, 0, 0) == 0);
    uint64_t nonzero = 0;
    for (uint64_t i = 0; i < DATA_WORDS; i++) nonzero += v[i] != 0;
    bad |= rt_check("after DETACH the range is private zero memory", nonzero == 0);
    bad |= rt_check("the owner's pages are untouched by the detach", fill_check(g, 0, 1));
    return bad;
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    (void)ncpu;
    (void)ram_bytes;
    if (cpu != 0)
        return 0;
    uint8_t *base = (uint8_t *)RT_ALIGN_UP((uint64_t)(uintptr_t)rt_mem_base(), RT_MIB);
    if (rt_mem_size() < 4 * RT_MIB) {
        printf("grants: needs 4 MiB of free memory\n");
        return 1;
    }
    volatile uint64_t *g = (volatile uint64_t *)base;
    for (uint64_t i = 0; i < DATA_WORDS; i++) g[i] = 0;
    long r = rt_hypercall(HC_MAKE, (uint64_t)(uintptr_t)g, GRANT_BYTES, KEY, 0);
    if (r == RT_HC_ENOSYS) {
        printf("grants: no grants here (native, flat memory or the shadow MMU)\n");
        return 0;
    }
    if (r == -17)
        return as_user(base);
    int bad = rt_check("GRANT_MAKE succeeds", r == 0);
    if (r != 0) return 1;
    bad |= rt_check("GRANT_MAKE of a key in use gives -17", rt_hypercall(HC_MAKE, (uint64_t)(uintptr_t)g, RT_PAGE, KEY, 0) == -17);
    bad |= rt_check("GRANT_MAKE of an empty range gives -22", rt_hypercall(HC_MAKE, (uint64_t)(uintptr_t)g, 0, KEY + 2, 0) == -22);
    fill_check(g, 0, 0);
    g[W_MAGIC] = MAGIC;
    if (wait_for(g, W_ARRIVED, 1, WAIT_NS) || rt_cmpxchg(&g[W_ARRIVED], 0, CLOSED) == 1) {
        printf("grants: owner shares its grant with another VM\n");
        count(g, ROUNDS);
        bad |= rt_check("the user finished", wait_for(g, W_USER_DONE, 1, 20 * WAIT_NS));
        bad |= rt_check("lock xadd from two VMs counts every add", g[W_XADD] == 2ULL * ROUNDS);
        bad |= rt_check("lock cmpxchg from two VMs counts every increment", g[W_CAS] == 2ULL * ROUNDS);
        bad |= rt_check("the user's pattern is visible", fill_check(g, 1, 1));
        bad |= rt_check("PAGEOUT by the owner succeeds", rt_pageout((void *)g, GRANT_BYTES) >= 0);
        bad |= rt_check("contents kept after the owner's PAGEOUT", fill_check(g, 0, 1) && fill_check(g, 1, 1));
    } else {
        bad |= alone(base, g);
    }
    bad |= rt_check("GRANT_REMOVE succeeds", rt_hypercall(HC_REMOVE, KEY, 0, 0, 0) == 0);
    bad |= rt_check("GRANT_REMOVE again gives -2", rt_hypercall(HC_REMOVE, KEY, 0, 0, 0) == -2);
    bad |= rt_check("the owner's own pages stay after the removal", fill_check(g, 0, 1));
    return bad;
}
