/*
 * qemuboot: a multiboot (v1) shim that boots one ToyVmm guest ELF (the
 * first multiboot module) on QEMU into the CPU state of GUEST-ABI.md, for
 * vCPU 0 only. See ../qemurun and README.md.
 */
    .set MB_MAGIC, 0x1BADB002
    .set MB_FLAGS, 0x00000003       /* page-aligned modules, memory info */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .code32
    .text
    .globl _start
_start:
    cli
    mov     $stack_top, %esp
    push    %ebx                    /* multiboot info */
    push    %eax                    /* multiboot magic */
    call    boot_main               /* prepares everything, returns only on error */
1:  hlt
    jmp     1b

/*
 * void enter_long_mode(uint32_t cr3, uint32_t gdt_desc)
 * Reads the 64-bit entry state from boot_state (see boot.c).
 */
    .globl enter_long_mode
enter_long_mode:
    mov     4(%esp), %eax
    mov     %eax, %cr3
    mov     8(%esp), %eax
    lgdt    (%eax)
    mov     %cr4, %eax
    or      $0x620, %eax            /* PAE | OSFXSR | OSXMMEXCPT */
    mov     %eax, %cr4
    mov     $0xC0000080, %ecx
    rdmsr
    or      $0xD01, %eax            /* SCE | LME | NXE (LMA follows) */
    wrmsr
    mov     %cr0, %eax
    and     $0x9FFFFFFB, %eax       /* clear CD, NW, EM */
    or      $0x80010033, %eax       /* PG | WP | NE | ET | MP | PE */
    mov     %eax, %cr0
    ljmp    $0x08, $long_mode

    .code64
long_mode:
    mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    xor     %eax, %eax
    mov     %eax, %fs
    mov     %eax, %gs
    mov     boot_state+0(%rip), %rsp    /* stack top */
    mov     boot_state+8(%rip), %rdx    /* ram_bytes */
    mov     boot_state+16(%rip), %r8    /* entry */
    xor     %edi, %edi                  /* vCPU 0 */
    mov     $1, %esi                    /* one vCPU */
    push    $2
    popfq
    xor     %eax, %eax
    xor     %ebx, %ebx
    xor     %ecx, %ecx
    xor     %ebp, %ebp
    xor     %r9d, %r9d
    xor     %r10d, %r10d
    xor     %r11d, %r11d
    xor     %r12d, %r12d
    xor     %r13d, %r13d
    xor     %r14d, %r14d
    xor     %r15d, %r15d
    jmp     *%r8

    .bss
    .balign 16
    .space 8192
stack_top:

    .section .note.GNU-stack, "", @progbits
