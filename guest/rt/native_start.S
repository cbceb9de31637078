/*
 * Native Linux entry point and the raw clone used for vCPU threads.
 */
    .text
    .globl _start
    .type _start, @function
_start:
    xor     %ebp, %ebp
    mov     %rsp, %rdi              /* argc, argv[], NULL, envp[] */
    and     $-16, %rsp
    call    rt_native_start         /* never returns */
    hlt
    .size _start, . - _start

/*
 * long rt_native_clone(unsigned long flags, void *stack_top,
 *                      void (*fn)(void *), void *arg)
 * Starts fn(arg) on a new thread running on stack_top (16-byte aligned);
 * the thread ends with SYS_exit when fn returns. Returns the thread id or
 * a negative errno in the parent.
 */
    .globl rt_native_clone
    .type rt_native_clone, @function
rt_native_clone:
    sub     $16, %rsi
    mov     %rdx, (%rsi)            /* fn  */
    mov     %rcx, 8(%rsi)           /* arg */
    mov     $56, %eax               /* SYS_clone(flags, stack, ptid, ctid, tls) */
    xor     %edx, %edx
    xor     %r10d, %r10d
    xor     %r8d, %r8d
    syscall
    test    %rax, %rax
    jnz     1f
    /* child: on the new stack */
    xor     %ebp, %ebp
    pop     %rax
    pop     %rdi
    call    *%rax
    mov     $60, %eax               /* SYS_exit (this thread only) */
    xor     %edi, %edi
    syscall
    hlt
1:  ret
    .size rt_native_clone, . - rt_native_clone

    .section .note.GNU-stack, "", @progbits
