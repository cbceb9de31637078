/*
 * Shared parts of the isa guest (isa.c, isa_ops.c): operands, flag masks
 * and the CRC every group folds its results into.
 */
#ifndef TOYVMM_ISA_H
#define TOYVMM_ISA_H
#include "rt.h"

#define CF 0x001ull
#define PF 0x004ull
#define AF 0x010ull
#define ZF 0x040ull
#define SF 0x080ull
#define OF 0x800ull
#define ARITH (CF | PF | AF | ZF | SF | OF)

static const uint64_t vals[] __attribute__((unused)) = {
    0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
    0x100000000ull, 0x7FFFFFFFFFFFFFFFull, 0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull,
    0x0123456789ABCDEFull, 0xFEDCBA9876543210ull, 0x5555555555555555ull, 0xAAAAAAAAAAAAAAAAull,
    0x00000000DEADBEEFull, 0x8000000080000000ull, 0x0000FFFF0000FFFFull, 0x3C3C3C3C3C3C3C3Cull,
};
#define NV (sizeof vals / sizeof vals[0])
/* Incoming RFLAGS: all status flags clear, only CF, all set. */
static const uint64_t flag_ins[] __attribute__((unused)) = { 0x2, 0x2 | CF, 0x2 | ARITH };


extern uint32_t g_crc;
void mix(uint64_t v);
static inline void mixf(uint64_t flags, uint64_t mask) { mix(flags & mask); }

void group_alu(void);
void group_unary(void);
void group_shift(void);
void group_dshift(void);
void group_muldiv(void);
void group_bits(void);
void group_cond(void);
void group_string(void);
void group_misc(void);
#ifdef __SSE2__
void group_sse(void);
#endif

#endif
