/*
 * VM backend of the runtime: the devices and hypercalls of GUEST-ABI.md.
 */
#include "rt.h"

#define PORT_DEBUGCON 0xE9
#define PORT_EXIT 0xF4

extern char _end[];               /* link.ld: end of the highest segment */
extern volatile uint32_t rt_bss_ready;

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

void rt_console_write(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        outb(PORT_DEBUGCON, (uint8_t)s[i]);
}

_Noreturn void rt_backend_exit(int status)
{
    outb(PORT_EXIT, (uint8_t)status);
    /* Not reached on a VMM that honours the exit port; stop this vCPU. */
    rt_backend_cpu_stop();
}

_Noreturn void rt_exit(int code)
{
    int st = code & 0xFF;
    rt_backend_exit((code != 0 && st == 0) ? 1 : st);
}

_Noreturn void rt_backend_cpu_stop(void)
{
    for (;;)
        __asm__ volatile("cli; hlt" ::: "memory");
}

long rt_hypercall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
    long ret;
    __asm__ volatile("vmcall"
                     : "=a"(ret)
                     : "a"(nr), "b"(a0), "c"(a1), "d"(a2), "S"(a3)
                     : "memory");
    return ret;
}

long rt_pageout(void *start, uint64_t bytes)
{
    return rt_hypercall(RT_HC_PAGEOUT, (uint64_t)(uintptr_t)start, bytes, 0, 0);
}

long rt_discard(void *start, uint64_t bytes)
{
    return rt_hypercall(RT_HC_DISCARD, (uint64_t)(uintptr_t)start, bytes, 0, 0);
}

long rt_phase(const char *name)
{
    return rt_hypercall(RT_HC_PHASE, (uint64_t)(uintptr_t)name, 0, 0, 0);
}

int rt_is_vm(void) { return 1; }

static uint8_t g_code_buf[16384] __attribute__((aligned(4096)));

void *rt_code_alloc(size_t bytes)
{
    return bytes <= sizeof g_code_buf ? g_code_buf : NULL;
}

/* Called by crt0 on every vCPU once .bss is clear. */
_Noreturn void rt_vm_start(unsigned cpu, unsigned ncpu, uint64_t ram_bytes);
_Noreturn void rt_vm_start(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu == 0) {
        uint64_t base = RT_ALIGN_UP((uint64_t)(uintptr_t)_end, RT_PAGE);
        uint64_t top = ram_bytes > 0x100000 ? ram_bytes - 0x100000 : 0;
        rt_runtime_init(ncpu, ram_bytes, (void *)(uintptr_t)base, top > base ? top - base : 0);
        /* Other vCPUs may read the runtime state once this is 2. */
        rt_bss_ready = 2;
    } else {
        while (rt_bss_ready != 2)
            rt_pause();
    }
    rt_finish(cpu, main(cpu, ncpu, ram_bytes));
}
