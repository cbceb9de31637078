/*
 * The kernel's own page tables: a bump frame allocator over free memory and
 * a 4-level walker that creates missing tables on request.
 */
#include "kernel.h"

static uint8_t *g_next_frame;
static uint8_t *g_frames_end;
static uint64_t g_frames_used;

uint64_t *frame_alloc(void)
{
    if (!g_next_frame) {
        g_next_frame = rt_mem_base();
        g_frames_end = g_next_frame + rt_mem_size();
    }
    if (g_next_frame + RT_PAGE > g_frames_end) {
        printf("kernel: out of frames\n");
        rt_exit(98);
    }
    uint64_t *f = (uint64_t *)g_next_frame;
    g_next_frame += RT_PAGE;
    g_frames_used++;
    memset(f, 0, RT_PAGE);
    return f;
}

uint64_t frames_used(void) { return g_frames_used; }

/* Frames are identity mapped in every address space the kernel builds, so
 * a table's physical address is also a pointer to it. */
static uint64_t *table_at(uint64_t entry) { return (uint64_t *)(uintptr_t)(entry & PTE_ADDR); }

uint64_t *pte_lookup(uint64_t *pml4, uint64_t va, bool create)
{
    uint64_t *t = pml4;
    for (int shift = 39; shift > 12; shift -= 9) {
        uint64_t *e = &t[(va >> shift) & 511];
        if (!(*e & PTE_P)) {
            if (!create)
                return NULL;
            /* Upper levels allow everything; the leaf decides. */
            *e = (uint64_t)(uintptr_t)frame_alloc() | PTE_P | PTE_W | PTE_U;
        }
        if (*e & PTE_PS)
            return e; /* a large page: its entry is the leaf */
        t = table_at(*e);
    }
    return &t[(va >> 12) & 511];
}

void map_page(uint64_t *pml4, uint64_t va, uint64_t pa, uint64_t flags)
{
    *pte_lookup(pml4, va, true) = (pa & PTE_ADDR) | flags | PTE_P;
}

static void map_2m(uint64_t *pml4, uint64_t va, uint64_t pa, uint64_t flags)
{
    uint64_t *t = pml4;
    for (int shift = 39; shift > 21; shift -= 9) {
        uint64_t *e = &t[(va >> shift) & 511];
        if (!(*e & PTE_P))
            *e = (uint64_t)(uintptr_t)frame_alloc() | PTE_P | PTE_W | PTE_U;
        t = table_at(*e);
    }
    t[(va >> 21) & 511] = (pa & PTE_ADDR) | flags | PTE_P | PTE_PS;
}

uint64_t *build_kernel_space(uint64_t ram_bytes)
{
    uint64_t *pml4 = frame_alloc();
    uint64_t user_lo = (uint64_t)(uintptr_t)__user_text_start;
    uint64_t user_hi = (uint64_t)(uintptr_t)__user_text_end;
    const uint64_t two_mib = 2 * RT_MIB;
    for (uint64_t pa = 0; pa < ram_bytes;) {
        if (pa >= two_mib && (pa & (two_mib - 1)) == 0 && pa + two_mib <= ram_bytes) {
            map_2m(pml4, pa, pa, PTE_W);
            pa += two_mib;
        } else {
            uint64_t flags = PTE_W;
            if (pa >= user_lo && pa < user_hi)
                flags |= PTE_U;
            map_page(pml4, pa, pa, flags);
            pa += RT_PAGE;
        }
    }
    return pml4;
}
