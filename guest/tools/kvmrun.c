/*
 * kvmrun: a minimal reference runner for ToyVmm guests on Linux KVM.
 *
 *   kvmrun [-c vcpus] [-m ram_mib] guest.elf
 *
 * It sets up the machine of GUEST-ABI.md (long mode, identity map of RAM in
 * the top MiB, flat GDT, one 64 KiB stack per vCPU, RDI/RSI/RDX) with the
 * hardware doing the executing, so a guest can be checked against a real
 * x86-64 CPU independently of the ToyVmm interpreter. Differences from the
 * ToyVmm VMM: hypercalls are handled inside KVM, which answers -1000 to
 * PAGEOUT and DISCARD (so the pageout and discard guests fail here); rdtsc
 * runs at the host TSC rate; an exception with no guest IDT is a triple
 * fault, reported with the vCPU's RIP only. On a host whose KVM emulates
 * rather than executes some instructions (the "kvm-pvm" module, for one),
 * SSE instructions stop the run with an internal error: use the
 * -mgeneral-regs-only builds there.
 * Exit status: the guest's (port 0xF4, or 0 when every vCPU halted), 125
 * for a runner or KVM error.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024ull * 1024ull)
#define RESERVED MIB
#define STACK_BYTES (64 * 1024)

static int g_kvm, g_vm, g_run_size, g_ncpu = 1;
static uint8_t *g_ram;
static uint64_t g_ram_bytes = 64 * MIB, g_entry;
static pthread_mutex_t g_out_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_halted;

static void die(const char *what)
{
    fprintf(stderr, "kvmrun: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    _exit(125);
}

static void fail(const char *msg)
{
    fprintf(stderr, "kvmrun: %s\n", msg);
    fflush(stdout);
    _exit(125);
}

static void load_elf(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        die("stat");
    uint8_t *f = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f == MAP_FAILED)
        die("mmap elf");
    Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
    if ((size_t)st.st_size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
        eh->e_ident[EI_CLASS] != ELFCLASS64)
        fail("not an ELF64 file");
    if (eh->e_machine != EM_X86_64)
        fail("not EM_X86_64");
    if (eh->e_type != ET_EXEC)
        fail("not ET_EXEC");
    g_entry = eh->e_entry;
    for (int i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr *ph = (Elf64_Phdr *)(f + eh->e_phoff + (uint64_t)i * eh->e_phentsize);
        if (ph->p_type == PT_INTERP)
            fail("has PT_INTERP");
        if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
            continue;
        if (ph->p_paddr < MIB || ph->p_paddr + ph->p_memsz > g_ram_bytes - RESERVED)
            fail("segment outside [1 MiB, ram - 1 MiB)");
        if (ph->p_filesz > ph->p_memsz || ph->p_offset + ph->p_filesz > (uint64_t)st.st_size)
            fail("segment file size out of range");
        memcpy(g_ram + ph->p_paddr, f + ph->p_offset, ph->p_filesz);
        memset(g_ram + ph->p_paddr + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
    }
    munmap(f, (size_t)st.st_size);
    close(fd);
}

/* Top MiB: GDT at +0, PML4 at +0x1000, PDPT at +0x2000, PDs from +0x3000
 * (2 MiB pages), stacks from the very top downwards. */
static uint64_t g_gdt, g_pml4;

static void build_tables(void)
{
    uint64_t top = g_ram_bytes - RESERVED;
    uint64_t ngib = (g_ram_bytes + (1ull << 30) - 1) >> 30;
    if (ngib > 64)
        fail("ram too large for this runner");
    g_gdt = top;
    g_pml4 = top + 0x1000;
    uint64_t pdpt = top + 0x2000, pd = top + 0x3000;
    uint64_t *gdt = (uint64_t *)(g_ram + g_gdt);
    gdt[0] = 0;
    gdt[1] = 0x00209A0000000000ull; /* 0x08: 64-bit code, DPL 0 */
    gdt[2] = 0x0000920000000000ull; /* 0x10: data */
    uint64_t *p4 = (uint64_t *)(g_ram + g_pml4);
    uint64_t *p3 = (uint64_t *)(g_ram + pdpt);
    p4[0] = pdpt | 3;
    for (uint64_t g = 0; g < ngib; g++) {
        uint64_t *p2 = (uint64_t *)(g_ram + pd + g * 0x1000);
        p3[g] = (pd + g * 0x1000) | 3;
        for (uint64_t i = 0; i < 512; i++) {
            uint64_t pa = (g << 30) | (i << 21);
            if (pa + 2 * MIB <= g_ram_bytes)
                p2[i] = pa | 0x83; /* P | RW | PS */
        }
    }
}

static void set_seg(struct kvm_segment *s, uint16_t sel, int code)
{
    memset(s, 0, sizeof *s);
    s->selector = sel;
    s->limit = 0xFFFFFFFF;
    s->present = 1;
    s->s = 1;
    s->g = 1;
    s->type = code ? 0xB : 0x3;
    s->l = code;
    s->db = code ? 0 : 1;
}

struct vcpu {
    int fd, index;
    struct kvm_run *run;
    pthread_t thread;
};

static void *vcpu_loop(void *arg)
{
    struct vcpu *v = arg;
    for (;;) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            die("KVM_RUN");
        }
        struct kvm_run *r = v->run;
        switch (r->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *data = (uint8_t *)r + r->io.data_offset;
            if (r->io.direction == KVM_EXIT_IO_OUT && r->io.port == 0xE9) {
                pthread_mutex_lock(&g_out_lock);
                fwrite(data, 1, (size_t)r->io.size * r->io.count, stdout);
                pthread_mutex_unlock(&g_out_lock);
            } else if (r->io.direction == KVM_EXIT_IO_OUT && r->io.port == 0xF4) {
                pthread_mutex_lock(&g_out_lock);
                fflush(stdout);
                _exit(data[0]);
            } else if (r->io.direction == KVM_EXIT_IO_IN) {
                memset(data, 0xFF, (size_t)r->io.size * r->io.count);
            }
            break;
        }
        case KVM_EXIT_HLT:
            pthread_mutex_lock(&g_out_lock);
            if (++g_halted == g_ncpu) {
                fflush(stdout);
                _exit(0);
            }
            pthread_mutex_unlock(&g_out_lock);
            return NULL;
        case KVM_EXIT_MMIO:
            fprintf(stderr, "kvmrun: vCPU %d: access to unbacked address 0x%llx\n", v->index,
                    (unsigned long long)r->mmio.phys_addr);
            fflush(stdout);
            _exit(125);
        default: {
            struct kvm_regs regs;
            ioctl(v->fd, KVM_GET_REGS, &regs);
            struct kvm_sregs sregs;
            ioctl(v->fd, KVM_GET_SREGS, &sregs);
            fflush(stdout);
            fprintf(stderr, "kvmrun: vCPU %d: exit reason %u (8 = shutdown/triple fault, "
                    "17 = internal error %u) at rip 0x%llx rsp 0x%llx cr2 0x%llx\n", v->index,
                    r->exit_reason, r->exit_reason == KVM_EXIT_INTERNAL_ERROR ? r->internal.suberror : 0,
                    (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
                    (unsigned long long)sregs.cr2);
            fprintf(stderr, "kvmrun: cr0 0x%llx cr4 0x%llx efer 0x%llx\n", (unsigned long long)sregs.cr0, (unsigned long long)sregs.cr4, (unsigned long long)sregs.efer);
            _exit(125);
        }
        }
    }
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "c:m:")) != -1) {
        if (opt == 'c')
            g_ncpu = atoi(optarg);
        else if (opt == 'm')
            g_ram_bytes = strtoull(optarg, NULL, 10) * MIB;
        else
            return 125;
    }
    if (optind != argc - 1 || g_ncpu < 1 || g_ncpu > 16 || g_ram_bytes < 4 * MIB ||
        (g_ram_bytes & (2 * MIB - 1)))
        fail("usage: kvmrun [-c vcpus 1..16] [-m ram_mib, even, >= 4] guest.elf");

    g_ram = mmap(NULL, g_ram_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
                 MAP_NORESERVE, -1, 0);
    if (g_ram == MAP_FAILED)
        die("mmap ram");
    load_elf(argv[optind]);
    build_tables();

    if ((g_kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0)
        die("/dev/kvm");
    if ((g_vm = ioctl(g_kvm, KVM_CREATE_VM, 0)) < 0)
        die("KVM_CREATE_VM");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = g_ram_bytes,
        .userspace_addr = (uint64_t)(uintptr_t)g_ram,
    };
    if (ioctl(g_vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("KVM_SET_USER_MEMORY_REGION");
    g_run_size = ioctl(g_kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

    int ncpuid = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + ncpuid * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = (uint32_t)ncpuid;
    if (ioctl(g_kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
        die("KVM_GET_SUPPORTED_CPUID");

    struct vcpu *v = calloc((size_t)g_ncpu, sizeof *v);
    for (int i = 0; i < g_ncpu; i++) {
        v[i].index = i;
        if ((v[i].fd = ioctl(g_vm, KVM_CREATE_VCPU, i)) < 0)
            die("KVM_CREATE_VCPU");
        if (ioctl(v[i].fd, KVM_SET_CPUID2, cpuid) < 0)
            die("KVM_SET_CPUID2");
        v[i].run = mmap(NULL, (size_t)g_run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v[i].fd, 0);
        if (v[i].run == MAP_FAILED)
            die("mmap run");
        struct kvm_sregs s;
        if (ioctl(v[i].fd, KVM_GET_SREGS, &s) < 0)
            die("KVM_GET_SREGS");
        set_seg(&s.cs, 0x08, 1);
        set_seg(&s.ds, 0x10, 0);
        s.es = s.ss = s.ds;
        set_seg(&s.fs, 0, 0);
        s.gs = s.fs;
        s.gdt.base = g_gdt;
        s.gdt.limit = 3 * 8 - 1;
        s.idt.base = 0;
        s.idt.limit = 0;
        s.cr0 = 0x80010033ull; /* PG | WP | NE | ET | MP | PE */
        s.cr3 = g_pml4;
        s.cr4 = 0x620;         /* OSXMMEXCPT | OSFXSR | PAE */
        s.efer = 0xD01;        /* NXE | LMA | LME | SCE */
        if (ioctl(v[i].fd, KVM_SET_SREGS, &s) < 0)
            die("KVM_SET_SREGS");
        struct kvm_fpu fpu;
        memset(&fpu, 0, sizeof fpu);
        fpu.fcw = 0x37F;
        fpu.mxcsr = 0x1F80;
        if (ioctl(v[i].fd, KVM_SET_FPU, &fpu) < 0)
            die("KVM_SET_FPU");
        struct kvm_regs r;
        memset(&r, 0, sizeof r);
        r.rip = g_entry;
        r.rflags = 2;
        r.rsp = g_ram_bytes - (uint64_t)i * STACK_BYTES;
        r.rdi = (uint64_t)i;
        r.rsi = (uint64_t)g_ncpu;
        r.rdx = g_ram_bytes;
        if (ioctl(v[i].fd, KVM_SET_REGS, &r) < 0)
            die("KVM_SET_REGS");
    }
    for (int i = 0; i < g_ncpu; i++)
        if (pthread_create(&v[i].thread, NULL, vcpu_loop, &v[i]) != 0)
            fail("pthread_create");
    for (int i = 0; i < g_ncpu; i++)
        pthread_join(v[i].thread, NULL);
    return 125; /* not reached: the last halt or the exit port ends the run */
}
