/*
 * VM entry point (GUEST-ABI.md, "CPU state at entry"). Every vCPU starts
 * here at once with RSP = its own stack, RDI = vCPU index, RSI = vCPU count,
 * RDX = ram_bytes.
 *
 * vCPU 0 clears .bss exactly once, then publishes rt_bss_ready = 1; the
 * others spin on that flag before touching any C state. The flag lives in
 * .data (not .bss) so the clearing cannot race with the spinning. The VMM
 * already zeroes p_filesz..p_memsz; clearing again keeps the guest correct
 * on a loader that does not.
 */
    .section .data
    .balign 4
    .globl rt_bss_ready
rt_bss_ready:
    .long 0

    .section .text.boot, "ax"
    .globl _start
    .type _start, @function
_start:
    cld
    mov     %rdi, %r12              /* cpu (callee-saved across calls) */
    mov     %rsi, %r13              /* ncpu */
    mov     %rdx, %r14              /* ram_bytes */
    test    %edi, %edi
    jnz     2f

    lea     __bss_start(%rip), %rdi
    lea     __bss_end(%rip), %rcx
    sub     %rdi, %rcx
    xor     %eax, %eax
    rep stosb
    /* x86 keeps stores in order: the zeroes above are visible before the
     * flag, which the loads at 2: pair with. */
    movl    $1, rt_bss_ready(%rip)
    jmp     3f

2:  pause
    cmpl    $0, rt_bss_ready(%rip)
    je      2b

3:  xor     %ebp, %ebp
    mov     %r12, %rdi
    mov     %r13, %rsi
    mov     %r14, %rdx
    call    rt_vm_start             /* never returns */
1:  cli
    hlt
    jmp     1b
    .size _start, . - _start

    .section .note.GNU-stack, "", @progbits
