/*
 * Code that runs at CPL 3. It lives in .user.text, the only kernel-image
 * pages mapped with U, so it must not call anything outside this file nor
 * read .rodata: everything here is inline and uses immediates only.
 */
#include "kernel.h"

#define USER __attribute__((section(".user.text")))

static inline __attribute__((always_inline)) long sys(long nr, long a, long b)
{
    long r;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(0)
                     : "rcx", "r11", "memory");
    return r;
}

static inline __attribute__((always_inline)) long int80(long nr, long a, long b)
{
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(0) : "memory");
    return r;
}

/*
 * arg = 0: report what CPL 3 sees, make calls, leave with SYS_EXIT 0x55.
 * arg != 0: read the kernel address arg (the kernel ends the task on #PF).
 * Reports: 0 = CS, 1 = SS, 2 = syscall ADD result, 3 = int 0x80 ADD result,
 * 4 = reached after cli, 5 = registers kept across syscall.
 */
USER void user_main(uint64_t arg)
{
    if (arg) {
        volatile uint64_t *kernel_page = (volatile uint64_t *)(uintptr_t)arg;
        sys(SYS_REPORT, 6, (long)*kernel_page);
        sys(SYS_EXIT, 0x66, 0);
    }
    uint16_t cs, ss;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    __asm__ volatile("mov %%ss, %0" : "=r"(ss));
    sys(SYS_REPORT, 0, cs);
    sys(SYS_REPORT, 1, ss);
    sys(SYS_REPORT, 2, sys(SYS_ADD, 40, 2));
    sys(SYS_REPORT, 3, int80(SYS_ADD, 1000, 337));
    __asm__ volatile("cli");
    sys(SYS_REPORT, 4, 1);
    /* Registers other than RAX, RCX and R11 survive a syscall. */
    uint64_t kept;
    __asm__ volatile("mov $0x1234, %%r12\n\t"
                     "mov $0x5678, %%r10\n\t"
                     "mov $1, %%eax\n\t"
                     "mov $1, %%edi\n\t"
                     "mov $2, %%esi\n\t"
                     "syscall\n\t"
                     "shl $16, %%r10\n\t"
                     "xor %%r10, %%r12\n\t"
                     "mov %%r12, %0"
                     : "=r"(kept) : : "rax", "rdi", "rsi", "rdx", "rcx", "r10", "r11", "r12", "memory");
    sys(SYS_REPORT, 5, (long)kept);
    sys(SYS_EXIT, 0x55, 0);
    for (;;)
        ;
}
