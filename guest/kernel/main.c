/*
 * kernel: builds its own page tables, GDT/TSS/IDT and syscall MSRs, then
 * checks exceptions, demand paging, invlpg, CR3 switches and CPL 3 round
 * trips. One line per check; exit 0 only if all pass. vCPU 0 only.
 */
#include "kernel.h"

uint64_t *g_pml4;
static int g_bad;

static void check(const char *name, bool ok)
{
    g_bad |= rt_check(name, ok);
}

static volatile uint64_t *demand(unsigned page, unsigned off)
{
    return (volatile uint64_t *)(uintptr_t)(DEMAND_VA + page * RT_PAGE + off);
}

static void check_exceptions(void)
{
    __asm__ volatile("int3" ::: "memory");
    check("int3 -> #BP handled", ks.bp == 1);

    __asm__ volatile("ud2" ::: "memory");
    __asm__ volatile("ud2" ::: "memory");
    check("ud2 -> #UD skipped (twice)", ks.ud == 2);

    uint64_t q, r;
    __asm__ volatile("xor %%edx, %%edx\n\t"
                     "divq %%rcx"
                     : "=a"(q), "=d"(r) : "a"(1234567ull), "c"(0ull) : "cc");
    check("divide by zero -> #DE fixed up", ks.de == 1 && q == 1234567 && r == 0);

    int64_t sq, sr;
    __asm__ volatile("cqo\n\t"
                     "idivq %%rcx"
                     : "=a"(sq), "=d"(sr) : "a"(INT64_MIN), "c"(-1ll) : "cc");
    check("idiv overflow -> #DE fixed up", ks.de == 2 && sq == INT64_MIN && sr == 0);
}

static void check_demand_paging(void)
{
    uint64_t before = ks.pf_demand;
    /* A read of a never-touched page: #PF with error 0, CR2 exact. */
    uint64_t v = *demand(0, 0x128);
    check("read fault: error code 0, CR2 exact",
          v == 0 && ks.last_pf_error == 0 && ks.last_pf_addr == DEMAND_VA + 0x128);
    uint64_t *pte = pte_lookup(g_pml4, DEMAND_VA, false);
    check("accessed bit set by the read, dirty bit clear",
          pte && (*pte & PTE_A) && !(*pte & PTE_D));
    *demand(0, 0x128) = 7;
    check("dirty bit set by the write", (*pte & PTE_D) && *demand(0, 0x128) == 7);

    /* A write to a never-touched page: error W. */
    *demand(1, 8) = 0x1111;
    check("write fault: error code W", ks.last_pf_error == PF_W && ks.last_pf_addr == DEMAND_VA + RT_PAGE + 8);

    for (unsigned p = 2; p < 18; p++)
        *demand(p, (p * 8) % RT_PAGE) = 0xD000 + p;
    bool kept = true;
    for (unsigned p = 2; p < 18; p++)
        kept &= *demand(p, (p * 8) % RT_PAGE) == 0xD000 + p;
    check("16 more pages mapped on first touch, values kept", ks.pf_demand - before == 18 && kept);

    /* Read-only page, supervisor write with CR0.WP: #PF with P|W. */
    uint64_t *pte1 = pte_lookup(g_pml4, DEMAND_VA + RT_PAGE, false);
    *pte1 &= ~PTE_W;
    invlpg(DEMAND_VA + RT_PAGE);
    *demand(1, 16) = 0x2222;
    check("write to read-only page -> #PF P|W, then allowed",
          ks.pf_wp == 1 && ks.last_pf_error == (PF_P | PF_W) && *demand(1, 16) == 0x2222 &&
          *demand(1, 8) == 0x1111);
}

static void check_invlpg(void)
{
    uint64_t *fa = frame_alloc(), *fb = frame_alloc();
    fa[5] = 0xAAAA;
    fb[5] = 0xBBBB;
    uint64_t va = DEMAND_VA + 40 * RT_PAGE;
    map_page(g_pml4, va, (uint64_t)(uintptr_t)fa, PTE_W);
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)va;
    uint64_t first = p[5]; /* the TLB now holds va -> fa */
    map_page(g_pml4, va, (uint64_t)(uintptr_t)fb, PTE_W);
    invlpg(va);
    check("invlpg after remap reads the new frame", first == 0xAAAA && p[5] == 0xBBBB);

    uint64_t faults = ks.pf_demand;
    *pte_lookup(g_pml4, va, false) = 0;
    invlpg(va);
    uint64_t after = p[5]; /* faults; the handler maps a fresh zero frame */
    check("invlpg after unmap faults again", ks.pf_demand == faults + 1 && after == 0);
}

static void check_cr3_switch(void)
{
    uint64_t *f1 = frame_alloc(), *f2 = frame_alloc();
    f1[0] = 0x1111;
    f2[0] = 0x2222;
    map_page(g_pml4, PRIV_VA, (uint64_t)(uintptr_t)f1, PTE_W);

    /* Address space 2 shares PML4 slots 0-2 and has its own slot 3. */
    uint64_t *pml4b = frame_alloc();
    for (int i = 0; i < 3; i++)
        pml4b[i] = g_pml4[i];
    map_page(pml4b, PRIV_VA, (uint64_t)(uintptr_t)f2, PTE_W);

    volatile uint64_t *priv = (volatile uint64_t *)(uintptr_t)PRIV_VA;
    uint64_t a = priv[0];
    uint64_t cr3a = read_cr3();
    write_cr3((uint64_t)(uintptr_t)pml4b);
    uint64_t b = priv[0];
    priv[0] = 0x3333;
    bool on_b = read_cr3() == (uint64_t)(uintptr_t)pml4b;
    write_cr3(cr3a);
    uint64_t a2 = priv[0];
    check("CR3 switch between two address spaces",
          a == 0x1111 && b == 0x2222 && on_b && a2 == 0x1111 && f2[0] == 0x3333);
}

static void check_user_mode(void)
{
    /* The user stack: one U page in its own PML4 slot. */
    uint64_t *stack = frame_alloc();
    map_page(g_pml4, USER_VA, (uint64_t)(uintptr_t)stack, PTE_W | PTE_U);
    uint64_t user_rsp = USER_VA + RT_PAGE;

    long code = enter_user((uint64_t)(uintptr_t)user_main, user_rsp, 0);
    check("iretq to CPL 3 (CS 0x2b, SS 0x23)", ks.report[0] == SEL_UCODE && ks.report[1] == SEL_UDATA);
    check("syscall/sysret round trip", ks.report[2] == 42 && ks.syscall_cs == SEL_KCODE &&
          ks.syscall_user_rip >= (uint64_t)(uintptr_t)__user_text_start &&
          ks.syscall_user_rip < (uint64_t)(uintptr_t)__user_text_end &&
          (ks.syscall_user_rflags & 0x2) != 0);
    check("registers kept across syscall", ks.report[5] == 0x56781234);
    check("int 0x80 from CPL 3, iretq back", ks.report[3] == 1337 && ks.int80 == 1 && ks.int80_cs == SEL_UCODE);
    check("cli at CPL 3 -> #GP, skipped", ks.gp_user == 1 && ks.report[4] == 1);
    check("SYS_EXIT returns to the kernel", code == 0x55);

    uint64_t kernel_addr = (uint64_t)(uintptr_t)&ks;
    code = enter_user((uint64_t)(uintptr_t)user_main, user_rsp, kernel_addr);
    check("user read of a kernel page -> #PF P|U, task ended",
          code == -(long)(PF_P | PF_U) && ks.pf_user == 1 && ks.last_pf_addr == kernel_addr &&
          ks.report[6] == 0);

    /* Back at CPL 0 with everything working. */
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    *demand(20, 0) = 99;
    check("back at CPL 0, kernel still works", cs == SEL_KCODE && *demand(20, 0) == 99);
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    printf("kernel: starting\n");

    g_pml4 = build_kernel_space(ram_bytes);
    write_cr3((uint64_t)(uintptr_t)g_pml4);
    check("own page tables loaded (CR3)", read_cr3() == (uint64_t)(uintptr_t)g_pml4);

    cpu_setup();
    uint16_t tr;
    __asm__ volatile("str %0" : "=r"(tr));
    check("GDT, TSS and IDT loaded", tr == SEL_TSS);

    /* Reload CS from the new GDT with a far return. */
    uint16_t cs;
    __asm__ volatile("pushq $0x08\n\t"
                     "leaq 1f(%%rip), %%rax\n\t"
                     "pushq %%rax\n\t"
                     "lretq\n"
                     "1:\n\t"
                     "mov %%cs, %0"
                     : "=r"(cs) : : "rax", "memory");
    check("lretq reloads CS", cs == SEL_KCODE && ks.ud_lretq == 0);

    check_exceptions();
    check_demand_paging();
    check_invlpg();
    check_cr3_switch();
    check_user_mode();

    printf("kernel: %s\n", g_bad ? "FAIL" : "PASS");
    return g_bad;
}
