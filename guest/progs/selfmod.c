/*
 * selfmod: self-modifying code. Writes machine code into an executable
 * buffer, runs it, patches it and runs it again:
 *   1. patch the immediate of already-executed code from outside it;
 *   2. an instruction that patches the very next instruction of its own
 *      block (the new bytes must be the ones executed);
 *   3. an instruction that straddles a page boundary, patched on the
 *      second page;
 *   4. replace a whole function body with a different one.
 * Single vCPU. Exit 0 when every call returned the value of the bytes
 * present at the time.
 */
#include "rt.h"

typedef uint32_t (*fn_t)(void);

static void put_mov_ret(uint8_t *p, uint32_t imm)
{
    p[0] = 0xB8; /* mov $imm32, %eax */
    memcpy(p + 1, &imm, 4);
    p[5] = 0xC3; /* ret */
}

/* Calls through a volatile pointer so the compiler cannot assume the bytes. */
static uint32_t call(uint8_t *p)
{
    fn_t volatile f = (fn_t)(void *)p;
    return f();
}

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    uint8_t *buf = rt_code_alloc(3 * RT_PAGE);
    if (!buf) {
        printf("selfmod: no executable memory\n");
        return 1;
    }
    int bad = 0;
    printf("selfmod: start\n");

    /* 1 */
    put_mov_ret(buf, 111);
    uint32_t a = call(buf);
    uint32_t v = 222;
    memcpy(buf + 1, &v, 4);
    uint32_t b = call(buf);
    printf("  patched immediate: %u then %u\n", a, b);
    bad |= rt_check("patch of executed code seen", a == 111 && b == 222);

    /* 2: movb $0x5A, 1(%rip) ; mov $0, %eax ; ret */
    static const uint8_t inblock[] = { 0xC6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x5A,
                                       0xB8, 0x00, 0x00, 0x00, 0x00, 0xC3 };
    uint8_t *p2 = buf + 0x100;
    memcpy(p2, inblock, sizeof inblock);
    uint32_t c = call(p2);
    p2[8] = 0x00; /* undo, run again */
    uint32_t d = call(p2);
    printf("  in-block patch: %u and %u\n", c, d);
    bad |= rt_check("store to the next instruction is executed", c == 0x5A && d == 0x5A);

    /* 3: mov $imm32, %eax straddles the page boundary (2 bytes before it). */
    uint8_t *p3 = buf + RT_PAGE - 2;
    put_mov_ret(p3, 0x01020304);
    uint32_t e = call(p3);
    p3[3] = 0x77; /* on the second page */
    uint32_t f = call(p3);
    printf("  page-crossing: %08x then %08x\n", e, f);
    bad |= rt_check("patch on the second page of an instruction seen", e == 0x01020304 && f == 0x01770304);

    /* 4: a loop body replaced by another: sum 1..10, then product 1..10. */
    static const uint8_t sum[] = { 0x31, 0xC0,             /* xor %eax,%eax */
                                   0xB9, 0x0A, 0, 0, 0,    /* mov $10,%ecx */
                                   0x01, 0xC8,             /* 1: add %ecx,%eax */
                                   0xFF, 0xC9,             /* dec %ecx */
                                   0x75, 0xFA,             /* jnz 1b */
                                   0xC3 };
    static const uint8_t prod[] = { 0xB8, 0x01, 0, 0, 0,   /* mov $1,%eax */
                                    0xB9, 0x0A, 0, 0, 0,   /* mov $10,%ecx */
                                    0x0F, 0xAF, 0xC1,      /* 1: imul %ecx,%eax */
                                    0xFF, 0xC9,            /* dec %ecx */
                                    0x75, 0xF9,            /* jnz 1b */
                                    0xC3 };
    uint8_t *p4 = buf + 2 * RT_PAGE + 0x40;
    memcpy(p4, sum, sizeof sum);
    uint32_t g = 0;
    for (int i = 0; i < 3; i++)
        g = call(p4);
    memcpy(p4, prod, sizeof prod);
    uint32_t h = call(p4);
    printf("  replaced function: %u then %u\n", g, h);
    bad |= rt_check("replaced function body runs", g == 55 && h == 3628800);

    printf("selfmod: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
