/*
 * Kernel entry points: exception/interrupt stubs, the syscall entry, and
 * the switch to CPL 3 and back.
 */
#include "asm-consts.h"

/* Every stub pushes an error code (0 when the CPU pushes none) and its
 * vector, so trap_common sees one frame shape (struct trap_frame). */
.macro ISR vec, has_error
    .balign 16
isr_\vec:
    .if \has_error == 0
    pushq   $0
    .endif
    pushq   $\vec
    jmp     trap_common
.endm

    .text
    .balign 16
trap_common:
    push    %rax
    push    %rbx
    push    %rcx
    push    %rdx
    push    %rsi
    push    %rdi
    push    %rbp
    push    %r8
    push    %r9
    push    %r10
    push    %r11
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %rsp, %rdi
    /* Align the stack for the C call; the frame pointer is kept in rbx. */
    mov     %rsp, %rbx
    and     $-16, %rsp
    call    trap
    mov     %rbx, %rsp
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %r11
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rbp
    pop     %rdi
    pop     %rsi
    pop     %rdx
    pop     %rcx
    pop     %rbx
    pop     %rax
    add     $16, %rsp               /* vector, error code */
    iretq

/* Vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30. */
    ISR 0, 0
    ISR 1, 0
    ISR 2, 0
    ISR 3, 0
    ISR 4, 0
    ISR 5, 0
    ISR 6, 0
    ISR 7, 0
    ISR 8, 1
    ISR 9, 0
    ISR 10, 1
    ISR 11, 1
    ISR 12, 1
    ISR 13, 1
    ISR 14, 1
    ISR 15, 0
    ISR 16, 0
    ISR 17, 1
    ISR 18, 0
    ISR 19, 0
    ISR 20, 0
    ISR 21, 1
    ISR 22, 0
    ISR 23, 0
    ISR 24, 0
    ISR 25, 0
    ISR 26, 0
    ISR 27, 0
    ISR 28, 0
    ISR 29, 1
    ISR 30, 1
    ISR 31, 0
    ISR 128, 0

    .section .rodata
    .balign 8
    .globl isr_table
isr_table:                          /* vectors 0-31, then 0x80 */
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,128
    .quad isr_\v
    .endr

/*
 * syscall: RCX = user RIP, R11 = user RFLAGS, RSP still the user's.
 * RAX = number, RDI, RSI, RDX = arguments; result in RAX. Every other
 * register comes back as it was.
 */
    .text
    .globl syscall_entry
    .balign 16
syscall_entry:
    mov     %rsp, user_saved_rsp(%rip)
    lea     syscall_stack_top(%rip), %rsp
    push    %rcx
    push    %r11
    push    %rdi
    push    %rsi
    push    %rdx
    push    %r8
    push    %r9
    push    %r10
    mov     %rdx, %rcx
    mov     %rsi, %rdx
    mov     %rdi, %rsi
    mov     %rax, %rdi
    mov     56(%rsp), %r8           /* user RIP (pushed rcx), for the kernel's checks */
    mov     48(%rsp), %r9           /* user RFLAGS (pushed r11) */
    call    syscall_dispatch
    pop     %r10
    pop     %r9
    pop     %r8
    pop     %rdx
    pop     %rsi
    pop     %rdi
    pop     %r11
    pop     %rcx
    mov     user_saved_rsp(%rip), %rsp
    sysretq

/*
 * long enter_user(uint64_t rip, uint64_t rsp, uint64_t arg)
 * Saves the kernel's callee-saved registers and stack, then iretq to CPL 3
 * at rip with rsp and RDI = arg. Returns when kernel_resume(code) runs.
 */
    .globl enter_user
enter_user:
    push    %rbx
    push    %rbp
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %rsp, kernel_saved_rsp(%rip)
    pushq   $SEL_UDATA              /* SS */
    push    %rsi                    /* RSP */
    pushq   $0x2                    /* RFLAGS: interrupts stay off */
    pushq   $SEL_UCODE              /* CS */
    push    %rdi                    /* RIP */
    mov     %rdx, %rdi
    xor     %eax, %eax
    xor     %ebx, %ebx
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %esi, %esi
    xor     %ebp, %ebp
    xor     %r8d, %r8d
    xor     %r9d, %r9d
    xor     %r10d, %r10d
    xor     %r11d, %r11d
    xor     %r12d, %r12d
    xor     %r13d, %r13d
    xor     %r14d, %r14d
    xor     %r15d, %r15d
    iretq

/* _Noreturn void kernel_resume(long code): from a CPL-0 context entered
 * out of user mode (a syscall or a trap), abandon that context and return
 * from enter_user with code. */
    .globl kernel_resume
kernel_resume:
    mov     %rdi, %rax
    mov     kernel_saved_rsp(%rip), %rsp
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbp
    pop     %rbx
    ret

    .section .bss
    .balign 16
    .globl user_saved_rsp, kernel_saved_rsp
user_saved_rsp:
    .quad 0
kernel_saved_rsp:
    .quad 0
    .balign 16
    .space 16384
syscall_stack_top:

    .section .note.GNU-stack, "", @progbits
