/*
 * kernel: a small VM-only kernel that exercises the system side of the
 * interpreter (see README.md for the list of checks).
 *
 * Virtual layout (4-level paging, 4 KiB pages unless noted):
 *   [0, ram)            identity map: 4 KiB pages for the first 2 MiB (the
 *                       image; the .user.text pages also carry U), 2 MiB
 *                       pages above
 *   DEMAND_VA (PML4 1)  not mapped at start: #PF maps a zeroed frame
 *   USER_VA   (PML4 2)  the user stack page (U)
 *   PRIV_VA   (PML4 3)  one page that differs between address space 1 and 2
 * Selectors: 0x08 kernel code, 0x10 kernel data, 0x18 (unused 32-bit user
 * code, there for the STAR layout), 0x23 user data, 0x2B user code,
 * 0x30 TSS.
 */
#ifndef TOYVMM_KERNEL_H
#define TOYVMM_KERNEL_H
#include "rt.h"
#include "asm-consts.h"

#define DEMAND_VA 0x0000008000000000ull
#define DEMAND_PAGES 64
#define USER_VA 0x0000010000000000ull
#define PRIV_VA 0x0000018000000000ull

#define PTE_P 0x001ull
#define PTE_W 0x002ull
#define PTE_U 0x004ull
#define PTE_A 0x020ull
#define PTE_D 0x040ull
#define PTE_PS 0x080ull
#define PTE_NX (1ull << 63)
#define PTE_ADDR 0x000FFFFFFFFFF000ull

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_TSS 0x30

#define PF_P 1u
#define PF_W 2u
#define PF_U 4u

/* Pushed by entry.S: general registers, then vector and error code, then
 * the CPU's interrupt frame. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};

/* System calls (syscall and int 0x80 share the numbers). */
#define SYS_ADD 1    /* a + b */
#define SYS_REPORT 2 /* report[a] = b; returns the caller's CS as the kernel saw it */
#define SYS_EXIT 3   /* back to the kernel, enter_user returns a */

/* paging.c */
uint64_t *frame_alloc(void);
uint64_t frames_used(void);
uint64_t *pte_lookup(uint64_t *pml4, uint64_t va, bool create);
void map_page(uint64_t *pml4, uint64_t va, uint64_t pa, uint64_t flags);
uint64_t *build_kernel_space(uint64_t ram_bytes);

static inline uint64_t read_cr2(void) { uint64_t v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory"); }

/* cpu.c */
void cpu_setup(void);
struct kernel_stats {
    uint64_t de, bp, ud, ud_lretq, gp_user, pf, pf_demand, pf_wp, pf_user;
    uint64_t last_pf_addr, last_pf_error, last_pf_rip;
    uint64_t int80, int80_cs, syscalls, syscall_user_rip, syscall_user_rflags, syscall_cs;
    uint64_t report[8];
};
extern struct kernel_stats ks;
extern uint64_t *g_pml4;

/* entry.S */
long enter_user(uint64_t rip, uint64_t rsp, uint64_t arg);
_Noreturn void kernel_resume(long code);
extern char isr_table[];
void syscall_entry(void);

/* user.c (lives in .user.text) */
void user_main(uint64_t arg);
extern char __user_text_start[], __user_text_end[];

#endif
