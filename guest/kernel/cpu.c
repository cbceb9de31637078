/*
 * GDT with a TSS, IDT, the syscall MSRs, and the exception handlers.
 */
#include "kernel.h"

struct kernel_stats ks;

struct __attribute__((packed)) tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};

struct __attribute__((packed)) gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
};

struct __attribute__((packed)) table_reg {
    uint16_t limit;
    uint64_t base;
};

static uint64_t g_gdt[8] __attribute__((aligned(16)));
static struct tss64 g_tss __attribute__((aligned(16)));
static struct gate g_idt[256] __attribute__((aligned(16)));
/* The stack the CPU switches to (TSS.RSP0) on a trap from CPL 3. */
static uint8_t g_rsp0_stack[16384] __attribute__((aligned(16)));

#define MSR_EFER 0xC0000080u
#define MSR_STAR 0xC0000081u
#define MSR_LSTAR 0xC0000082u
#define MSR_FMASK 0xC0000084u

static uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static void set_gate(int vec, void *handler, int dpl)
{
    uint64_t a = (uint64_t)(uintptr_t)handler;
    g_idt[vec].offset_lo = (uint16_t)a;
    g_idt[vec].selector = SEL_KCODE;
    g_idt[vec].ist = 0;
    g_idt[vec].type_attr = (uint8_t)(0x8E | (dpl << 5)); /* present, 64-bit interrupt gate */
    g_idt[vec].offset_mid = (uint16_t)(a >> 16);
    g_idt[vec].offset_hi = (uint32_t)(a >> 32);
    g_idt[vec].reserved = 0;
}

void cpu_setup(void)
{
    g_gdt[0] = 0;
    g_gdt[1] = 0x00209A0000000000ull; /* 0x08 kernel code, 64-bit */
    g_gdt[2] = 0x0000920000000000ull; /* 0x10 kernel data */
    g_gdt[3] = 0x00CFFA000000FFFFull; /* 0x18 user code, 32-bit (unused; STAR layout) */
    g_gdt[4] = 0x0000F20000000000ull; /* 0x20 user data */
    g_gdt[5] = 0x0020FA0000000000ull; /* 0x28 user code, 64-bit */
    uint64_t tss = (uint64_t)(uintptr_t)&g_tss;
    uint64_t limit = sizeof g_tss - 1;
    g_gdt[6] = (limit & 0xFFFF) | ((tss & 0xFFFFFF) << 16) | (0x89ull << 40) |
               (((limit >> 16) & 0xF) << 48) | (((tss >> 24) & 0xFF) << 56);
    g_gdt[7] = tss >> 32;

    memset(&g_tss, 0, sizeof g_tss);
    g_tss.rsp[0] = (uint64_t)(uintptr_t)(g_rsp0_stack + sizeof g_rsp0_stack);
    g_tss.iomap_base = sizeof g_tss;

    struct table_reg gdtr = { sizeof g_gdt - 1, (uint64_t)(uintptr_t)g_gdt };
    __asm__ volatile(
        "lgdt %0\n\t"
        /* CS keeps working: 0x08 is the same descriptor in this GDT; it is
         * reloaded with lretq once the IDT is up (main.c). */
        "movw $0x10, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%ss\n\t"
        "movw $0x30, %%ax\n\t"
        "ltr %%ax\n\t"
        : : "m"(gdtr) : "rax", "memory");

    const uint64_t *isr = (const uint64_t *)(const void *)isr_table;
    for (int v = 0; v < 32; v++)
        set_gate(v, (void *)(uintptr_t)isr[v], v == 3 ? 3 : 0);
    set_gate(0x80, (void *)(uintptr_t)isr[32], 3);
    struct table_reg idtr = { sizeof g_idt - 1, (uint64_t)(uintptr_t)g_idt };
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");

    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1); /* SCE */
    /* SYSCALL: CS = 0x08, SS = 0x10. SYSRET (64-bit): CS = 0x18 + 16 | 3,
     * SS = 0x18 + 8 | 3. */
    wrmsr(MSR_STAR, (0x18ull << 48) | ((uint64_t)SEL_KCODE << 32));
    wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)syscall_entry);
    wrmsr(MSR_FMASK, 0x47700); /* TF DF IF IOPL NT AC */
}

long syscall_dispatch(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t user_rip,
                      uint64_t user_rflags);
long syscall_dispatch(uint64_t nr, uint64_t a, uint64_t b, uint64_t c, uint64_t user_rip,
                      uint64_t user_rflags)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    ks.syscalls++;
    ks.syscall_user_rip = user_rip;
    ks.syscall_user_rflags = user_rflags;
    ks.syscall_cs = cs;
    if (nr == SYS_ADD)
        return (long)(a + b);
    if (nr == SYS_REPORT) {
        if (a < RT_ARRAY_SIZE(ks.report))
            ks.report[a] = b;
        return cs;
    }
    if (nr == SYS_EXIT)
        kernel_resume((long)a);
    return -38; /* ENOSYS */
}

static _Noreturn void fatal(struct trap_frame *f)
{
    printf("kernel: unexpected exception %llu error %llx at rip %llx cs %llx cr2 %llx\n",
           (unsigned long long)f->vector, (unsigned long long)f->error,
           (unsigned long long)f->rip, (unsigned long long)f->cs, (unsigned long long)read_cr2());
    printf("kernel: FAIL\n");
    rt_exit(99);
}

static void page_fault(struct trap_frame *f)
{
    uint64_t addr = read_cr2();
    ks.pf++;
    ks.last_pf_addr = addr;
    ks.last_pf_error = f->error;
    ks.last_pf_rip = f->rip;
    if (f->error & PF_U) {
        /* A user access to a kernel page ends the user task. */
        ks.pf_user++;
        kernel_resume(-(long)f->error);
    }
    uint64_t page = RT_ALIGN_DOWN(addr, RT_PAGE);
    if (page >= DEMAND_VA && page < DEMAND_VA + DEMAND_PAGES * RT_PAGE) {
        uint64_t *pte = pte_lookup(g_pml4, page, true);
        if (!(f->error & PF_P)) {
            /* Not present: map a zeroed frame; the access is retried. */
            *pte = (uint64_t)(uintptr_t)frame_alloc() | PTE_P | PTE_W;
            ks.pf_demand++;
            return;
        }
        if ((f->error & PF_W) && !(*pte & PTE_W)) {
            /* Write to a read-only page (CR0.WP): make it writable. */
            *pte |= PTE_W;
            invlpg(page);
            ks.pf_wp++;
            return;
        }
    }
    fatal(f);
}

/* Called by trap_common with the saved frame; the return resumes it. */
void trap(struct trap_frame *f);
void trap(struct trap_frame *f)
{
    switch (f->vector) {
    case 0: /* #DE: the tests divide by RCX; make it 1 and retry */
        ks.de++;
        f->rcx = 1;
        return;
    case 3: /* #BP: RIP is already past int3 */
        ks.bp++;
        return;
    case 6: { /* #UD: skip a ud2 */
        const uint8_t *ip = (const uint8_t *)(uintptr_t)f->rip;
        if (ip[0] == 0x0F && ip[1] == 0x0B) {
            ks.ud++;
            f->rip += 2;
            return;
        }
        if (ip[0] == 0x48 && ip[1] == 0xCB) {
            /* lretq refused: do its work so the other checks still run,
             * and let main report it. */
            const uint64_t *sp = (const uint64_t *)(uintptr_t)f->rsp;
            f->rip = sp[0];
            f->cs = sp[1] & 0xFFFF;
            f->rsp += 16;
            ks.ud_lretq++;
            return;
        }
        break;
    }
    case 13: /* #GP: a cli at CPL 3 is skipped */
        if ((f->cs & 3) == 3 && *(const uint8_t *)(uintptr_t)f->rip == 0xFA) {
            ks.gp_user++;
            f->rip += 1;
            return;
        }
        break;
    case 14:
        page_fault(f);
        return;
    case 0x80:
        ks.int80++;
        ks.int80_cs = f->cs;
        f->rax = (uint64_t)syscall_dispatch(f->rax, f->rdi, f->rsi, f->rdx, f->rip, f->rflags);
        return;
    default:
        break;
    }
    fatal(f);
}
