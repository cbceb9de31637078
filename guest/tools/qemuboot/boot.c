/*
 * qemuboot, 32-bit part: loads the guest ELF64 from the first multiboot
 * module, builds the top-MiB GDT and identity map (2 MiB pages), and
 * enters the guest through enter_long_mode (boot.S).
 */
#include <stdint.h>

struct mb_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
};
struct mb_module {
    uint32_t start, end, string, reserved;
};

struct __attribute__((packed)) elf64_ehdr {
    uint8_t ident[16];
    uint16_t type, machine;
    uint32_t version;
    uint64_t entry, phoff, shoff;
    uint32_t flags;
    uint16_t ehsize, phentsize, phnum, shentsize, shnum, shstrndx;
};
struct __attribute__((packed)) elf64_phdr {
    uint32_t type, flags;
    uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

uint64_t boot_state[3]; /* stack top, ram_bytes, entry (read by boot.S) */
void enter_long_mode(uint32_t cr3, uint32_t gdt_desc);
void boot_main(uint32_t magic, struct mb_info *mbi);

static void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

static void say(const char *s)
{
    while (*s)
        outb(0xE9, (uint8_t)*s++);
}

static void stop(const char *why)
{
    say("qemuboot: ");
    say(why);
    say("\n");
    outb(0xF4, 125); /* isa-debug-exit: QEMU exits with (125 << 1) | 1 */
    for (;;)
        __asm__ volatile("cli; hlt");
}

static void copy(uint8_t *d, const uint8_t *s, uint32_t n) { while (n--) *d++ = *s++; }
static void zero(uint8_t *d, uint32_t n) { while (n--) *d++ = 0; }

void boot_main(uint32_t magic, struct mb_info *mbi)
{
    if (magic != 0x2BADB002 || !(mbi->flags & 8) || mbi->mods_count < 1)
        stop("needs a multiboot loader and the guest ELF as the first module");
    if (!(mbi->flags & 1))
        stop("no memory size from the loader");
    uint64_t ram = ((uint64_t)mbi->mem_upper + 1024) * 1024;
    /* mem_upper stops short of the ACPI tables QEMU keeps at the top of RAM;
     * round up to the -m size (a multiple of 2 MiB for the 2 MiB pages). */
    ram = (ram + (2ull << 20) - 1) & ~((2ull << 20) - 1);
    if (ram > 0xC0000000ull)
        ram = 0xC0000000ull;

    struct mb_module *mod = (struct mb_module *)(uintptr_t)mbi->mods_addr;
    const uint8_t *elf = (const uint8_t *)(uintptr_t)mod->start;
    const struct elf64_ehdr *eh = (const void *)elf;
    if (elf[0] != 0x7F || elf[1] != 'E' || elf[2] != 'L' || elf[3] != 'F' || elf[4] != 2)
        stop("module is not an ELF64 file");
    if (eh->machine != 62 || eh->type != 2)
        stop("not EM_X86_64 / ET_EXEC");
    for (int i = 0; i < eh->phnum; i++) {
        const struct elf64_phdr *ph = (const void *)(elf + (uint32_t)eh->phoff + i * eh->phentsize);
        if (ph->type == 3)
            stop("has PT_INTERP");
        if (ph->type != 1 || ph->memsz == 0)
            continue;
        if (ph->paddr < 0x100000 || ph->paddr + ph->memsz > ram - 0x100000)
            stop("segment outside [1 MiB, ram - 1 MiB)");
        if (ph->paddr < mod->end && ph->paddr + ph->memsz > mod->start)
            stop("segment overlaps the module (place modules lower)");
        copy((uint8_t *)(uintptr_t)ph->paddr, elf + (uint32_t)ph->offset, (uint32_t)ph->filesz);
        zero((uint8_t *)(uintptr_t)(ph->paddr + ph->filesz), (uint32_t)(ph->memsz - ph->filesz));
    }

    /* Top MiB: GDT + descriptor at +0, PML4 +0x1000, PDPT +0x2000, PDs +0x3000. */
    uint32_t top = (uint32_t)(ram - 0x100000);
    zero((uint8_t *)(uintptr_t)top, 0x7000);
    uint64_t *gdt = (uint64_t *)(uintptr_t)top;
    gdt[1] = 0x00209A0000000000ull;
    gdt[2] = 0x0000920000000000ull;
    uint16_t *desc = (uint16_t *)(uintptr_t)(top + 0x40);
    desc[0] = 3 * 8 - 1;
    *(uint32_t *)(desc + 1) = top;
    *(uint32_t *)(desc + 3) = 0;
    uint64_t *pml4 = (uint64_t *)(uintptr_t)(top + 0x1000);
    uint64_t *pdpt = (uint64_t *)(uintptr_t)(top + 0x2000);
    pml4[0] = (top + 0x2000) | 3;
    for (uint32_t g = 0; g < 3; g++) {
        uint64_t *pd = (uint64_t *)(uintptr_t)(top + 0x3000 + g * 0x1000);
        pdpt[g] = (top + 0x3000 + g * 0x1000) | 3;
        for (uint32_t i = 0; i < 512; i++) {
            uint64_t pa = ((uint64_t)g << 30) | ((uint64_t)i << 21);
            if (pa + (2u << 20) <= ram)
                pd[i] = pa | 0x83;
        }
    }
    boot_state[0] = ram;
    boot_state[1] = ram;
    boot_state[2] = eh->entry;
    enter_long_mode(top + 0x1000, top + 0x40);
}
