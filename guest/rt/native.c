/*
 * Native Linux backend of the runtime: raw syscalls, no libc.
 *
 *   usage: <program> [ncpu [ram_mib]]
 * Defaults come from guests.txt through the Makefile (RT_DEFAULT_NCPU,
 * RT_DEFAULT_RAM_MIB), so a bare run matches the recommended VM run.
 *
 * vCPUs are real threads (clone with CLONE_VM|CLONE_THREAD, 64 KiB stacks
 * like the VM's), all started before vCPU 0 enters main. Free memory is one
 * anonymous private mapping of ram_bytes - 2 MiB (the VM loses the top 1 MiB
 * to the VMM and about as much to the image and its alignment). PAGEOUT is
 * madvise(MADV_PAGEOUT), DISCARD is madvise(MADV_DONTNEED), PHASE a no-op.
 */
#include "rt.h"

#ifndef RT_DEFAULT_NCPU
#define RT_DEFAULT_NCPU 1
#endif
#ifndef RT_DEFAULT_RAM_MIB
#define RT_DEFAULT_RAM_MIB 64
#endif

#define SYS_write 1
#define SYS_mmap 9
#define SYS_madvise 28
#define SYS_exit 60
#define SYS_exit_group 231

#define MADV_DONTNEED 4
#define MADV_PAGEOUT 21

#define CLONE_FLAGS 0x50F00ul /* VM|FS|FILES|SIGHAND|THREAD|SYSVSEM */
#define STACK_BYTES (64 * 1024)

long rt_native_clone(unsigned long flags, void *stack_top, void (*fn)(void *), void *arg);

static long sys3(long nr, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c)
                     : "rcx", "r11", "memory");
    return r;
}

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c),
                     "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return r;
}

static void *map_anon(uint64_t bytes)
{
    /* PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE */
    long r = sys6(SYS_mmap, 0, (long)bytes, 3, 0x02 | 0x20 | 0x4000, -1, 0);
    return (r < 0 && r > -4096) ? NULL : (void *)r;
}

void rt_console_write(const char *s, size_t n)
{
    while (n) {
        long w = sys3(SYS_write, 1, (long)s, (long)n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

_Noreturn void rt_backend_exit(int status)
{
    for (;;)
        sys3(SYS_exit_group, status, 0, 0);
}

_Noreturn void rt_exit(int code)
{
    int st = code & 0xFF;
    rt_backend_exit((code != 0 && st == 0) ? 1 : st);
}

_Noreturn void rt_backend_cpu_stop(void)
{
    for (;;)
        sys3(SYS_exit, 0, 0, 0);
}

static long advise(void *start, uint64_t bytes, int advice)
{
    if (((uintptr_t)start | bytes) & (RT_PAGE - 1))
        return -22;
    long r = sys3(SYS_madvise, (long)start, (long)bytes, advice);
    return r < 0 ? r : (long)(bytes / RT_PAGE);
}

long rt_hypercall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
    (void)a2;
    (void)a3;
    if (nr == RT_HC_PAGEOUT)
        return advise((void *)(uintptr_t)a0, a1, MADV_PAGEOUT);
    if (nr == RT_HC_DISCARD)
        return advise((void *)(uintptr_t)a0, a1, MADV_DONTNEED);
    if (nr == RT_HC_PHASE)
        return rt_phase((const char *)(uintptr_t)a0);
    return RT_HC_ENOSYS;
}

long rt_pageout(void *start, uint64_t bytes)
{
    return advise(start, bytes, MADV_PAGEOUT);
}

long rt_discard(void *start, uint64_t bytes)
{
    return advise(start, bytes, MADV_DONTNEED);
}

/* Linux has no one to tell: phases only label the VMM's measurements. */
long rt_phase(const char *name)
{
    (void)name;
    return 0;
}

int rt_is_vm(void) { return 0; }

void *rt_code_alloc(size_t bytes)
{
    if (bytes > 16384)
        return NULL;
    /* PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS */
    long r = sys6(SYS_mmap, 0, 16384, 7, 0x02 | 0x20, -1, 0);
    return (r < 0 && r > -4096) ? NULL : (void *)r;
}

static unsigned g_boot_ncpu;
static uint64_t g_boot_ram;

static void vcpu_thread(void *arg)
{
    unsigned cpu = (unsigned)(uintptr_t)arg;
    rt_finish(cpu, main(cpu, g_boot_ncpu, g_boot_ram));
}

static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (~0ull - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

static _Noreturn void usage(const char *prog)
{
    static const char msg1[] = "usage: ";
    static const char msg2[] = " [ncpu (1..64) [ram_mib (4..65536)]]\n";
    sys3(SYS_write, 2, (long)msg1, sizeof msg1 - 1);
    sys3(SYS_write, 2, (long)prog, (long)strlen(prog));
    sys3(SYS_write, 2, (long)msg2, sizeof msg2 - 1);
    rt_backend_exit(2);
}

_Noreturn void rt_native_start(long *sp);
_Noreturn void rt_native_start(long *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    uint64_t ncpu = RT_DEFAULT_NCPU, ram_mib = RT_DEFAULT_RAM_MIB;
    if (argc > 3 || (argc > 1 && !parse_u64(argv[1], &ncpu)) ||
        (argc > 2 && !parse_u64(argv[2], &ram_mib)) ||
        ncpu < 1 || ncpu > 64 || ram_mib < 4 || ram_mib > 65536)
        usage(argv[0]);

    g_boot_ncpu = (unsigned)ncpu;
    g_boot_ram = ram_mib * RT_MIB;
    uint64_t mem_size = g_boot_ram - 2 * RT_MIB;
    void *mem = map_anon(mem_size);
    if (!mem) {
        static const char msg[] = "native runtime: mmap of guest memory failed\n";
        sys3(SYS_write, 2, (long)msg, sizeof msg - 1);
        rt_backend_exit(3);
    }
    rt_runtime_init(g_boot_ncpu, g_boot_ram, mem, mem_size);

    for (unsigned cpu = 1; cpu < g_boot_ncpu; cpu++) {
        char *stack = map_anon(STACK_BYTES);
        long tid = stack ? rt_native_clone(CLONE_FLAGS, stack + STACK_BYTES, vcpu_thread,
                                           (void *)(uintptr_t)cpu) : -12;
        if (tid < 0) {
            static const char msg[] = "native runtime: cannot start a vCPU thread\n";
            sys3(SYS_write, 2, (long)msg, sizeof msg - 1);
            rt_backend_exit(3);
        }
    }
    vcpu_thread((void *)0);
    __builtin_unreachable();
}
