/*
 * ToyVmm guest runtime: the one header every guest program includes.
 *
 * Each guest defines
 *
 *     int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes);
 *
 * which runs on every vCPU at once (cpu = 0 .. ncpu-1; ram_bytes is the
 * guest RAM size, GUEST-ABI.md). The run's exit status is vCPU 0's return
 * value if non-zero, else the first non-zero value another vCPU returned,
 * else 0; it is written to the exit port only after every vCPU's main has
 * returned (see rt/common.c).
 *
 * Two backends implement the same API:
 *   VM     (rt/crt0.S, rt/vm.c)      out 0xE9, out 0xF4, vmcall, hlt.
 *   native (rt/native_start.S, rt/native.c) raw Linux syscalls, one thread
 *          per vCPU (clone), madvise for the hypercalls, mmap for free memory.
 * Console output is byte-identical between the two for every program that
 * prints no addresses and no timings (none of the shipped ones do).
 */
#ifndef TOYVMM_RT_H
#define TOYVMM_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes);

/* ---- console (serialised by a spinlock; one printf is never interleaved) */
void rt_console_write(const char *s, size_t n);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
int snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap);
void puts(const char *s); /* appends '\n' */

/* ---- strings (also what gcc may call for struct copies and zeroing) ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *restrict d, const void *restrict s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* ---- exit ---- */
/* Ends the whole run now, from any vCPU, with status code & 0xFF. */
_Noreturn void rt_exit(int code);

/* ---- hypercalls (GUEST-ABI.md; native: madvise on the same range) ---- */
#define RT_HC_PAGEOUT 0x100
#define RT_HC_DISCARD 0x101
#define RT_HC_PHASE 0x110
#define RT_HC_ENOSYS (-1000)
/* Raw hypercall: RAX = nr, RBX, RCX, RDX, RSI = a0..a3; result from RAX. */
long rt_hypercall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3);
/* Page-aligned ranges of free memory. >= 0 on success (the VM returns the
 * number of pages acted on, native returns the page count of the range),
 * negative errno on a bad range. Do not print the value: it differs. */
long rt_pageout(void *start, uint64_t bytes);
long rt_discard(void *start, uint64_t bytes);
/* PHASE (0x110, GUEST-ABI 1.1): from now on the VMM also counts what it
 * measures under this name (1 to 63 printable ASCII characters), until the
 * next rt_phase of the VM; the time before the first one is "boot". The
 * name is passed by address, so it must be identity mapped (any string of
 * the program is, under the VMM's boot page tables). Returns 0, -22 for a bad
 * name, or -1000 on a VMM without PHASE: a phase only labels measurements,
 * so programs go on whatever it returns. Native: a no-op returning 0. */
long rt_phase(const char *name);

/* ---- free memory ----
 * VM: [end of image rounded up to 4 KiB, ram_bytes - 1 MiB), identity mapped
 * so a pointer into it is also its guest-physical address.
 * native: an anonymous private mapping of about the same size. */
void *rt_mem_base(void);
uint64_t rt_mem_size(void);
/* bytes (up to 16 KiB, page aligned) of memory that may hold code to run:
 * VM: a static buffer (the VMM's identity map is executable); native: an
 * RWX mapping. NULL if unavailable. One buffer per run. */
void *rt_code_alloc(size_t bytes);
/* 1 in the VM, 0 native. Never let it change what a program prints. */
int rt_is_vm(void);

/* ---- SMP ---- */
typedef struct { volatile uint32_t locked; } rt_spinlock_t;
#define RT_SPINLOCK_INIT { 0 }

static inline void rt_pause(void) { __asm__ volatile("pause" ::: "memory"); }

/* lock xadd: adds v, returns the old value. */
static inline uint64_t rt_atomic_add(volatile uint64_t *p, uint64_t v)
{
    __asm__ volatile("lock xaddq %0, %1" : "+r"(v), "+m"(*p) : : "memory", "cc");
    return v;
}
static inline uint32_t rt_atomic_add32(volatile uint32_t *p, uint32_t v)
{
    __asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory", "cc");
    return v;
}
/* lock cmpxchg: if *p == expected, *p = desired. Returns the old value. */
static inline uint64_t rt_cmpxchg(volatile uint64_t *p, uint64_t expected, uint64_t desired)
{
    __asm__ volatile("lock cmpxchgq %2, %1"
                     : "+a"(expected), "+m"(*p) : "r"(desired) : "memory", "cc");
    return expected;
}
static inline uint32_t rt_cmpxchg32(volatile uint32_t *p, uint32_t expected, uint32_t desired)
{
    __asm__ volatile("lock cmpxchgl %2, %1"
                     : "+a"(expected), "+m"(*p) : "r"(desired) : "memory", "cc");
    return expected;
}
static inline void rt_spin_lock(rt_spinlock_t *l)
{
    for (;;) {
        if (rt_cmpxchg32(&l->locked, 0, 1) == 0)
            return;
        while (l->locked)
            rt_pause();
    }
}
static inline void rt_spin_unlock(rt_spinlock_t *l)
{
    /* A plain store releases on x86 (TSO); the clobber keeps the compiler
     * from sinking critical-section stores below it. */
    __asm__ volatile("" ::: "memory");
    l->locked = 0;
}
/* Waits until every vCPU of the run has called it (reusable). */
void rt_barrier(void);
unsigned rt_ncpu(void);

static inline uint64_t rt_rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/* ---- helpers for programs ---- */
#define RT_PAGE 4096ull
#define RT_MIB (1024ull * 1024ull)
#define RT_ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define RT_ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a) - 1))
#define RT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* One check line: "  name: ok" or "  name: FAIL ...". Returns 0 / 1. */
int rt_check(const char *name, bool ok);

/* Test patterns (rt/pattern.c). Word i of a checked region holds
 * rt_pattern(i, round): it depends only on the index and the round, so both
 * backends check the same values, and it is never zero, so a page that was
 * dropped (reads zero) never passes for one that kept its contents. */
uint64_t rt_pattern(uint64_t word, uint64_t round);
/* Writes rt_pattern(i, round) to words [first, first + count) of mem. */
void rt_pattern_fill(volatile uint64_t *mem, uint64_t first, uint64_t count, uint64_t round);
/* Returns how many words of [first, first + count) of mem differ from
 * rt_pattern(i, round). */
uint64_t rt_pattern_verify(volatile uint64_t *mem, uint64_t first, uint64_t count, uint64_t round);

/* xorshift64* PRNG with a fixed seed: the same sequence in both backends. */
static inline uint64_t rt_rand64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ---- backend internals shared by rt/common.c ---- */
_Noreturn void rt_finish(unsigned cpu, int rc);
_Noreturn void rt_backend_exit(int status);
_Noreturn void rt_backend_cpu_stop(void);
void rt_runtime_init(unsigned ncpu, uint64_t ram_bytes, void *mem, uint64_t mem_size);

#endif
