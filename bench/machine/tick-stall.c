/*
 * tick-stall: how long a thread on one CPU takes to see a word another CPU writes,
 * depending on when the writer starts. It models the one-page invalidation of
 * ToyVmm's probe (bench/Secondary/InvalidateLatencyProbe.cs) with nothing of ToyVmm
 * in it: two "vCPU" threads spin on CPU 0 and CPU 1, the CPU 1 one polling a request
 * word and answering it; an "invalidator" thread on CPU 0 posts a request and times
 * the answer. Three ways to start a post:
 *
 *   tick     the invalidator yields its core to the CPU 0 spinner until that one has
 *            run, then posts as soon as it has the core again: the scheduler gives it
 *            back at a tick, as with the probe's "tick" wait;
 *   delayed  the same, then it spins 0-200 us (uniform) before it posts;
 *   woken    it sleeps 50-500 us on a high-resolution timer at a higher priority and
 *            posts as it wakes, preempting the CPU 0 spinner at a moment of its own.
 *
 * The threads run SCHED_RR when the caller may (root): other processes then cannot
 * preempt them, and what is left is the machine itself (interrupts, the hypervisor).
 * Each mode runs for 1000 posts by default, a few seconds; the real-time threads leave
 * the other processes 5% of the CPUs meanwhile (the kernel's RT throttling).
 *
 * Build and run: make tick-stall   (or: gcc -O2 -pthread -o tick-stall tick-stall.c; ./tick-stall [posts])
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum mode { TICK, DELAYED, WOKEN };
static const char *mode_name[] = { "tick", "delayed", "woken" };

static _Alignas(64) _Atomic uint64_t request;
static _Alignas(64) _Atomic uint64_t answer;
static _Alignas(64) _Atomic uint64_t cpu0_progress;
static _Alignas(64) _Atomic long answerer_switches;
static _Alignas(64) atomic_int stop;
static int realtime;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}

static void set_rr(int priority)
{
    struct sched_param p = { .sched_priority = priority };
    if (realtime) pthread_setschedparam(pthread_self(), SCHED_RR, &p);
}

static void *cpu0_spinner(void *unused)
{
    (void)unused;
    pin(0);
    set_rr(10);
    for (uint64_t x = 1; !atomic_load_explicit(&stop, memory_order_relaxed); x++)
        if ((x & 255) == 0) atomic_store_explicit(&cpu0_progress, x, memory_order_relaxed);
    return NULL;
}

static void *cpu1_answerer(void *unused)
{
    (void)unused;
    pin(1);
    set_rr(10);
    while (!atomic_load_explicit(&stop, memory_order_relaxed))
    {
        uint64_t r = atomic_load_explicit(&request, memory_order_acquire);
        if (r == atomic_load_explicit(&answer, memory_order_relaxed)) continue;
        atomic_store_explicit(&answer, r, memory_order_release);
        /* Context switches so far, after the answer: a post whose answer came after one is
         * reported apart (another thread ran on CPU 1, not the machine stalling it). */
        struct rusage u;
        getrusage(RUSAGE_THREAD, &u);
        atomic_store(&answerer_switches, u.ru_nivcsw + u.ru_nvcsw);
    }
    return NULL;
}

static int compare(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(enum mode mode, int posts, uint64_t *lat)
{
    pin(0);
    set_rr(mode == WOKEN ? 20 : 10);
    unsigned seed = 12345;
    int switched = 0;
    long last = atomic_load(&answerer_switches);
    for (int i = 0; i < posts; i++)
    {
        if (mode == WOKEN)
        {
            struct timespec z = { 0, 50000 + rand_r(&seed) % 450000 };
            nanosleep(&z, NULL);
        }
        else
        {
            uint64_t p = atomic_load(&cpu0_progress);
            while (atomic_load(&cpu0_progress) == p) sched_yield();
            if (mode == DELAYED)
                for (uint64_t until = now_ns() + rand_r(&seed) % 200000; now_ns() < until;) { }
        }
        uint64_t want = atomic_load(&request) + 1;
        uint64_t t0 = now_ns();
        atomic_store_explicit(&request, want, memory_order_release);
        while (atomic_load_explicit(&answer, memory_order_acquire) != want) { }
        lat[i] = now_ns() - t0;
        long s = atomic_load(&answerer_switches);
        if (s != last) { switched++; lat[i] = UINT64_MAX; }
        last = s;
    }
    qsort(lat, (size_t)posts, sizeof *lat, compare);
    int n = posts - switched, over = 0;
    for (int i = 0; i < n; i++) over += lat[i] > 1000;
    if (n == 0) { printf("%-8s every answer came after a context switch on CPU 1\n", mode_name[mode]); return; }
    printf("%-8s %5d %8.2f %8.2f %8.2f %8.2f %8.1f %7.1f%% %9d\n", mode_name[mode], n,
           lat[n / 2] / 1e3, lat[n * 9 / 10] / 1e3, lat[n * 99 / 100] / 1e3, lat[n * 999 / 1000] / 1e3,
           lat[n - 1] / 1e3, 100.0 * over / n, switched);
}

int main(int argc, char **argv)
{
    int posts = argc > 1 ? atoi(argv[1]) : 1000;
    if (posts < 10 || posts > 1000000) { fprintf(stderr, "tick-stall: posts is 10 to 1000000, not '%s'\n", argc > 1 ? argv[1] : ""); return 2; }
    struct sched_param p = { .sched_priority = 10 };
    realtime = sched_setscheduler(0, SCHED_RR, &p) == 0;
    p.sched_priority = 0;
    sched_setscheduler(0, SCHED_OTHER, &p);
    printf("tick-stall: %d posts per mode, %s\n", posts,
           realtime ? "threads SCHED_RR (no other process preempts them)" : "threads SCHED_OTHER (not root: other processes' load shows too)");
    printf("%-8s %5s %8s %8s %8s %8s %8s %8s %9s\n", "start", "posts", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", ">1 us", "switched");
    uint64_t *lat = malloc(sizeof *lat * (size_t)posts);
    if (!lat) return 1;
    pthread_t a, b;
    pthread_create(&a, NULL, cpu0_spinner, NULL);
    pthread_create(&b, NULL, cpu1_answerer, NULL);
    for (int m = TICK; m <= WOKEN; m++) run((enum mode)m, posts, lat);
    atomic_store(&stop, 1);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    free(lat);
    return 0;
}
