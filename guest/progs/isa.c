/*
 * isa: instruction-level self-test. Runs integer instructions through
 * inline assembly over a set of edge and random operands, at every operand
 * size, from several incoming flag states, and folds each result and the
 * *architecturally defined* flags into one CRC per group. Flags the SDM
 * leaves undefined for an instruction (AF after logic ops, OF after
 * multi-bit shifts, SF/ZF/AF/PF after mul, all of them after div, ...) are
 * masked out, so the answers are the same on every correct x86-64.
 * The expected CRCs were measured natively and agree with QEMU's TCG.
 * Groups: alu, unary, shift, double shift, muldiv, bits, cond, string, misc
 * (and sse in the -sse build). Exit 0 when every group matched.
 */
#include "rt.h"

#define CF 0x001ull
#define PF 0x004ull
#define AF 0x010ull
#define ZF 0x040ull
#define SF 0x080ull
#define OF 0x800ull
#define ARITH (CF | PF | AF | ZF | SF | OF)

static const uint64_t vals[] = {
    0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
    0x100000000ull, 0x7FFFFFFFFFFFFFFFull, 0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull,
    0x0123456789ABCDEFull, 0xFEDCBA9876543210ull, 0x5555555555555555ull, 0xAAAAAAAAAAAAAAAAull,
    0x00000000DEADBEEFull, 0x8000000080000000ull, 0x0000FFFF0000FFFFull, 0x3C3C3C3C3C3C3C3Cull,
};
#define NV (sizeof vals / sizeof vals[0])
/* Incoming RFLAGS: all status flags clear, only CF, all set. */
static const uint64_t flag_ins[] = { 0x2, 0x2 | CF, 0x2 | ARITH };

static uint32_t crc_table[256];
static uint32_t g_crc;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static void mix(uint64_t v)
{
    uint32_t c = ~g_crc;
    for (int i = 0; i < 8; i++, v >>= 8)
        c = crc_table[(c ^ (uint8_t)v) & 0xFF] ^ (c >> 8);
    g_crc = ~c;
}

static void mixf(uint64_t flags, uint64_t mask) { mix(flags & mask); }

/* ---- alu: two-operand instructions at 8/16/32/64 bits ---- */
#define BIN(name, insn, sfx, reg)                                                        \
    static uint64_t name(uint64_t a, uint64_t b, uint64_t fin, uint64_t *f)              \
    {                                                                                   \
        __asm__ volatile("pushq %[fi]\n\tpopfq\n\t" insn sfx " %" reg "[b], %" reg "[a]\n\t" \
                         "pushfq\n\tpopq %[fo]"                                          \
                         : [a] "+r"(a), [fo] "=&r"(*f)                                   \
                         : [b] "r"(b), [fi] "r"(fin)                                     \
                         : "cc");                                                        \
        return a;                                                                       \
    }
#define BIN4(op)                 \
    BIN(op##8, #op, "b", "b")    \
    BIN(op##16, #op, "w", "w")   \
    BIN(op##32, #op, "l", "k")   \
    BIN(op##64, #op, "q", "q")
BIN4(add) BIN4(adc) BIN4(sub) BIN4(sbb) BIN4(cmp) BIN4(and) BIN4(or) BIN4(xor) BIN4(test)

typedef uint64_t (*binfn)(uint64_t, uint64_t, uint64_t, uint64_t *);
struct binop {
    binfn fn[4];
    uint64_t mask;
};

static void group_alu(void)
{
    static const struct binop ops[] = {
        { { add8, add16, add32, add64 }, ARITH }, { { adc8, adc16, adc32, adc64 }, ARITH },
        { { sub8, sub16, sub32, sub64 }, ARITH }, { { sbb8, sbb16, sbb32, sbb64 }, ARITH },
        { { cmp8, cmp16, cmp32, cmp64 }, ARITH }, { { and8, and16, and32, and64 }, ARITH & ~AF },
        { { or8, or16, or32, or64 }, ARITH & ~AF }, { { xor8, xor16, xor32, xor64 }, ARITH & ~AF },
        { { test8, test16, test32, test64 }, ARITH & ~AF },
    };
    for (unsigned o = 0; o < RT_ARRAY_SIZE(ops); o++)
        for (unsigned s = 0; s < 4; s++)
            for (unsigned fi = 0; fi < RT_ARRAY_SIZE(flag_ins); fi++)
                for (unsigned i = 0; i < NV; i++)
                    for (unsigned j = 0; j < NV; j++) {
                        uint64_t f;
                        mix(ops[o].fn[s](vals[i], vals[j], flag_ins[fi], &f));
                        mixf(f, ops[o].mask);
                    }
}

/* ---- unary: inc dec neg not ---- */
#define UN(name, insn, sfx, reg)                                                    \
    static uint64_t name(uint64_t a, uint64_t fin, uint64_t *f)                     \
    {                                                                              \
        __asm__ volatile("pushq %[fi]\n\tpopfq\n\t" insn sfx " %" reg "[a]\n\t"     \
                         "pushfq\n\tpopq %[fo]"                                     \
                         : [a] "+r"(a), [fo] "=&r"(*f) : [fi] "r"(fin) : "cc");     \
        return a;                                                                  \
    }
#define UN4(op) UN(op##8, #op, "b", "b") UN(op##16, #op, "w", "w") UN(op##32, #op, "l", "k") UN(op##64, #op, "q", "q")
UN4(inc) UN4(dec) UN4(neg) UN4(not)

static void group_unary(void)
{
    typedef uint64_t (*unfn)(uint64_t, uint64_t, uint64_t *);
    static const unfn fns[][4] = {
        { inc8, inc16, inc32, inc64 }, { dec8, dec16, dec32, dec64 },
        { neg8, neg16, neg32, neg64 }, { not8, not16, not32, not64 },
    };
    for (unsigned o = 0; o < RT_ARRAY_SIZE(fns); o++)
        for (unsigned s = 0; s < 4; s++)
            for (unsigned fi = 0; fi < RT_ARRAY_SIZE(flag_ins); fi++)
                for (unsigned i = 0; i < NV; i++) {
                    uint64_t f;
                    mix(fns[o][s](vals[i], flag_ins[fi], &f));
                    mixf(f, ARITH); /* inc/dec keep CF, not keeps all: defined */
                }
}

/* ---- shifts and rotates by CL ---- */
#define SH(name, insn, sfx, reg)                                                      \
    static uint64_t name(uint64_t a, uint64_t c, uint64_t fin, uint64_t *f)           \
    {                                                                                \
        __asm__ volatile("pushq %[fi]\n\tpopfq\n\t" insn sfx " %%cl, %" reg "[a]\n\t" \
                         "pushfq\n\tpopq %[fo]"                                       \
                         : [a] "+r"(a), [fo] "=&r"(*f) : "c"(c), [fi] "r"(fin) : "cc"); \
        return a;                                                                    \
    }
#define SH4(op) SH(op##8, #op, "b", "b") SH(op##16, #op, "w", "w") SH(op##32, #op, "l", "k") SH(op##64, #op, "q", "q")
SH4(shl) SH4(shr) SH4(sar) SH4(rol) SH4(ror) SH4(rcl) SH4(rcr)

static void group_shift(void)
{
    typedef uint64_t (*shfn)(uint64_t, uint64_t, uint64_t, uint64_t *);
    static const shfn fns[][4] = {
        { shl8, shl16, shl32, shl64 }, { shr8, shr16, shr32, shr64 }, { sar8, sar16, sar32, sar64 },
        { rol8, rol16, rol32, rol64 }, { ror8, ror16, ror32, ror64 }, { rcl8, rcl16, rcl32, rcl64 },
        { rcr8, rcr16, rcr32, rcr64 },
    };
    static const unsigned bits[] = { 8, 16, 32, 64 };
    static const uint64_t counts[] = { 0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65 };
    for (unsigned o = 0; o < RT_ARRAY_SIZE(fns); o++)
        for (unsigned s = 0; s < 4; s++)
            for (unsigned k = 0; k < RT_ARRAY_SIZE(counts); k++) {
                uint64_t masked = counts[k] & (bits[s] == 64 ? 63 : 31);
                bool is_shift = o < 3;
                /* 8/16-bit shifts by >= the width leave CF (and the result's
                 * meaning) undefined: not tested. */
                if (is_shift && masked >= bits[s])
                    continue;
                uint64_t mask;
                if (masked == 0)
                    mask = ARITH;                       /* nothing changes */
                else if (is_shift)
                    mask = CF | PF | ZF | SF | (masked == 1 ? OF : 0);
                else
                    mask = (ARITH & ~OF) | (masked == 1 ? OF : 0); /* rotates touch CF, OF */
                for (unsigned fi = 0; fi < RT_ARRAY_SIZE(flag_ins); fi++)
                    for (unsigned i = 0; i < NV; i++) {
                        uint64_t f;
                        mix(fns[o][s](vals[i], counts[k], flag_ins[fi], &f));
                        mixf(f, mask);
                    }
            }
}

/* ---- shld/shrd (32/64) ---- */
#define DSH(name, insn, sfx, reg)                                                                \
    static uint64_t name(uint64_t a, uint64_t b, uint64_t c, uint64_t fin, uint64_t *f)          \
    {                                                                                           \
        __asm__ volatile("pushq %[fi]\n\tpopfq\n\t" insn sfx " %%cl, %" reg "[b], %" reg "[a]\n\t" \
                         "pushfq\n\tpopq %[fo]"                                                  \
                         : [a] "+r"(a), [fo] "=&r"(*f) : [b] "r"(b), "c"(c), [fi] "r"(fin) : "cc"); \
        return a;                                                                               \
    }
DSH(shld32, "shld", "l", "k") DSH(shld64, "shld", "q", "q") DSH(shrd32, "shrd", "l", "k") DSH(shrd64, "shrd", "q", "q")

static void group_dshift(void)
{
    typedef uint64_t (*dfn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t *);
    static const dfn fns[] = { shld32, shld64, shrd32, shrd64 };
    static const uint64_t counts[] = { 0, 1, 4, 31, 32, 33, 63 };
    for (unsigned o = 0; o < 4; o++)
        for (unsigned k = 0; k < RT_ARRAY_SIZE(counts); k++) {
            uint64_t masked = counts[k] & ((o & 1) ? 63 : 31);
            uint64_t mask = masked == 0 ? ARITH : (CF | PF | ZF | SF | (masked == 1 ? OF : 0));
            for (unsigned i = 0; i < NV; i += 2)
                for (unsigned j = 1; j < NV; j += 2) {
                    uint64_t f;
                    mix(fns[o](vals[i], vals[j], counts[k], 0x2 | CF, &f));
                    mixf(f, mask);
                }
        }
}

/* ---- mul, imul, div, idiv ---- */
static void group_muldiv(void)
{
    for (unsigned i = 0; i < NV; i++)
        for (unsigned j = 0; j < NV; j++) {
            uint64_t a = vals[i], b = vals[j], lo, hi, f;
            __asm__ volatile("mulq %[b]\n\tpushfq\n\tpopq %[f]"
                             : "=a"(lo), "=d"(hi), [f] "=r"(f) : "a"(a), [b] "r"(b) : "cc");
            mix(lo); mix(hi); mixf(f, CF | OF);
            __asm__ volatile("imulq %[b]\n\tpushfq\n\tpopq %[f]"
                             : "=a"(lo), "=d"(hi), [f] "=r"(f) : "a"(a), [b] "r"(b) : "cc");
            mix(lo); mix(hi); mixf(f, CF | OF);
            uint32_t l32, h32;
            __asm__ volatile("mull %[b]\n\tpushfq\n\tpopq %[f]"
                             : "=a"(l32), "=d"(h32), [f] "=r"(f) : "a"((uint32_t)a), [b] "r"((uint32_t)b) : "cc");
            mix(l32); mix(h32); mixf(f, CF | OF);
            uint64_t r = a;
            __asm__ volatile("imulq %[b], %[r]\n\tpushfq\n\tpopq %[f]"
                             : [r] "+r"(r), [f] "=r"(f) : [b] "r"(b) : "cc");
            mix(r); mixf(f, CF | OF);
            uint32_t r32 = (uint32_t)a;
            __asm__ volatile("imull %[b], %[r]\n\tpushfq\n\tpopq %[f]"
                             : [r] "+r"(r32), [f] "=r"(f) : [b] "r"((uint32_t)b) : "cc");
            mix(r32); mixf(f, CF | OF);
            uint16_t r16 = (uint16_t)a;
            __asm__ volatile("imulw %[b], %[r]\n\tpushfq\n\tpopq %[f]"
                             : [r] "+r"(r16), [f] "=r"(f) : [b] "r"((uint16_t)b) : "cc");
            mix(r16); mixf(f, CF | OF);
            __asm__ volatile("imulq $-77, %[b], %[r]\n\tpushfq\n\tpopq %[f]"
                             : [r] "=r"(r), [f] "=r"(f) : [b] "r"(b) : "cc");
            mix(r); mixf(f, CF | OF);
            __asm__ volatile("imulq $0x12345, %[b], %[r]\n\tpushfq\n\tpopq %[f]"
                             : [r] "=r"(r), [f] "=r"(f) : [b] "r"(b) : "cc");
            mix(r); mixf(f, CF | OF);
            uint8_t a8 = (uint8_t)a, b8 = (uint8_t)b;
            uint16_t ax;
            __asm__ volatile("mulb %[b]\n\tpushfq\n\tpopq %[f]" : "=a"(ax), [f] "=r"(f) : "a"(a8), [b] "q"(b8) : "cc");
            mix(ax); mixf(f, CF | OF);
            __asm__ volatile("imulb %[b]\n\tpushfq\n\tpopq %[f]" : "=a"(ax), [f] "=r"(f) : "a"(a8), [b] "q"(b8) : "cc");
            mix(ax); mixf(f, CF | OF);

            if (b == 0)
                continue;
            /* div: RDX:RAX / b with RDX < b so the quotient fits. */
            uint64_t q, rem, high = vals[(i + j) % NV] % b;
            __asm__ volatile("divq %[b]" : "=a"(q), "=d"(rem) : "a"(a), "d"(high), [b] "r"(b) : "cc");
            mix(q); mix(rem);
            uint32_t b32 = (uint32_t)b;
            if (b32 != 0) {
                uint32_t q32, rem32, high32 = (uint32_t)high % b32;
                __asm__ volatile("divl %[b]" : "=a"(q32), "=d"(rem32)
                                 : "a"((uint32_t)a), "d"(high32), [b] "r"(b32) : "cc");
                mix(q32); mix(rem32);
            }
            int64_t sa = (int64_t)a, sb = (int64_t)b;
            if (!(sa == INT64_MIN && sb == -1)) {
                int64_t sq, sr;
                __asm__ volatile("cqto\n\tidivq %[b]" : "=a"(sq), "=&d"(sr) : "a"(sa), [b] "r"(sb) : "cc");
                mix((uint64_t)sq); mix((uint64_t)sr);
            }
            int32_t s32a = (int32_t)a, s32b = (int32_t)b;
            if (s32b != 0 && !(s32a == INT32_MIN && s32b == -1)) {
                int32_t sq, sr;
                __asm__ volatile("cltd\n\tidivl %[b]" : "=a"(sq), "=&d"(sr) : "a"(s32a), [b] "r"(s32b) : "cc");
                mix((uint32_t)sq); mix((uint32_t)sr);
            }
        }
}

/* ---- bits: bt*, bsf/bsr, bswap, extensions ---- */
#define BT(name, insn, sfx, reg)                                                     \
    static uint64_t name(uint64_t a, uint64_t b, uint64_t *f)                        \
    {                                                                               \
        __asm__ volatile("pushq $0x8d7\n\tpopfq\n\t" insn sfx " %" reg "[b], %" reg "[a]\n\t" \
                         "pushfq\n\tpopq %[fo]"                                      \
                         : [a] "+r"(a), [fo] "=&r"(*f) : [b] "r"(b) : "cc");         \
        return a;                                                                   \
    }
BT(bt16, "bt", "w", "w") BT(bt32, "bt", "l", "k") BT(bt64, "bt", "q", "q")
BT(bts16, "bts", "w", "w") BT(bts32, "bts", "l", "k") BT(bts64, "bts", "q", "q")
BT(btr16, "btr", "w", "w") BT(btr32, "btr", "l", "k") BT(btr64, "btr", "q", "q")
BT(btc16, "btc", "w", "w") BT(btc32, "btc", "l", "k") BT(btc64, "btc", "q", "q")

static void group_bits(void)
{
    typedef uint64_t (*btfn)(uint64_t, uint64_t, uint64_t *);
    static const btfn fns[] = { bt16, bt32, bt64, bts16, bts32, bts64, btr16, btr32, btr64, btc16, btc32, btc64 };
    for (unsigned o = 0; o < RT_ARRAY_SIZE(fns); o++)
        for (unsigned i = 0; i < NV; i++)
            for (uint64_t bit = 0; bit < 70; bit += 3) {
                uint64_t f;
                mix(fns[o](vals[i], bit, &f));
                mixf(f, CF);
            }
    for (unsigned i = 0; i < NV; i++) {
        uint64_t a = vals[i], r, f;
        uint64_t scan[] = { a, a >> 1, a << 3, a & 0xFFFF0000ull };
        for (unsigned k = 0; k < 4; k++) {
            r = 0x5A5A;
            __asm__ volatile("bsfq %[a], %[r]\n\tpushfq\n\tpopq %[f]" : [r] "+r"(r), [f] "=r"(f) : [a] "r"(scan[k]) : "cc");
            mix(scan[k] ? r : 0); mixf(f, ZF);
            r = 0x5A5A;
            __asm__ volatile("bsrq %[a], %[r]\n\tpushfq\n\tpopq %[f]" : [r] "+r"(r), [f] "=r"(f) : [a] "r"(scan[k]) : "cc");
            mix(scan[k] ? r : 0); mixf(f, ZF);
            uint32_t r32 = 0x77;
            __asm__ volatile("bsrl %[a], %[r]\n\tpushfq\n\tpopq %[f]" : [r] "+r"(r32), [f] "=r"(f) : [a] "r"((uint32_t)scan[k]) : "cc");
            mix((uint32_t)scan[k] ? r32 : 0); mixf(f, ZF);
        }
        r = a;
        __asm__ volatile("bswapq %0" : "+r"(r));
        mix(r);
        uint32_t r32 = (uint32_t)a;
        __asm__ volatile("bswapl %0" : "+r"(r32));
        mix(r32);
        int64_t sx;
        __asm__ volatile("movsbq %b1, %0" : "=r"(sx) : "q"(a)); mix((uint64_t)sx);
        __asm__ volatile("movswq %w1, %0" : "=r"(sx) : "r"(a)); mix((uint64_t)sx);
        __asm__ volatile("movslq %k1, %0" : "=r"(sx) : "r"(a)); mix((uint64_t)sx);
        uint64_t zx = ~0ull;
        __asm__ volatile("movzbl %b1, %k0" : "+r"(zx) : "q"(a)); mix(zx);
        zx = ~0ull;
        __asm__ volatile("movzwl %w1, %k0" : "+r"(zx) : "r"(a)); mix(zx);
        uint64_t x = a;
        __asm__ volatile("cbtw" : "+a"(x)); mix(x);
        x = a;
        __asm__ volatile("cwtl" : "+a"(x)); mix(x);
        x = a;
        __asm__ volatile("cltq" : "+a"(x)); mix(x);
        uint64_t d = 0x1234;
        x = a;
        __asm__ volatile("cwtd" : "+a"(x), "+d"(d)); mix(x); mix(d);
        __asm__ volatile("cltd" : "+a"(x), "=d"(d)); mix(d);
        __asm__ volatile("cqto" : "+a"(x), "=d"(d)); mix(d);
    }
}

/* ---- cond: setcc and cmovcc after cmp ---- */
#define SETCC(cc)                                                                          \
    do {                                                                                   \
        uint8_t r;                                                                         \
        __asm__ volatile("cmpq %[b], %[a]\n\tset" #cc " %[r]" : [r] "=q"(r) : [a] "r"(a), [b] "r"(b) : "cc"); \
        bits = bits << 1 | r;                                                              \
        uint64_t m = 0x1111;                                                               \
        __asm__ volatile("cmpl %k[b], %k[a]\n\tcmov" #cc "q %[b], %[m]" : [m] "+r"(m) : [a] "r"(a), [b] "r"(b) : "cc"); \
        mix(m);                                                                            \
    } while (0)

static void group_cond(void)
{
    for (unsigned i = 0; i < NV; i++)
        for (unsigned j = 0; j < NV; j++) {
            uint64_t a = vals[i], b = vals[j], bits = 0;
            SETCC(o); SETCC(no); SETCC(b); SETCC(ae); SETCC(e); SETCC(ne); SETCC(be); SETCC(a);
            SETCC(s); SETCC(ns); SETCC(p); SETCC(np); SETCC(l); SETCC(ge); SETCC(le); SETCC(g);
            mix(bits);
        }
}

/* ---- string instructions ---- */
static uint8_t sbuf[1024], dbuf[1024];

static void fill(uint8_t *p, unsigned n, unsigned seed)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + seed);
}

static void mix_buf(const uint8_t *p, unsigned n)
{
    for (unsigned i = 0; i < n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        mix(v);
    }
}

static void group_string(void)
{
    static const unsigned lens[] = { 0, 1, 7, 8, 9, 63, 100, 255 };
    for (unsigned k = 0; k < RT_ARRAY_SIZE(lens); k++) {
        uint64_t n = lens[k];
        uint8_t *s, *d;
        uint64_t c;
        fill(sbuf, sizeof sbuf, 3);
        memset(dbuf, 0xEE, sizeof dbuf);
        s = sbuf + 5; d = dbuf + 11; c = n;
        __asm__ volatile("cld\n\trep movsb" : "+S"(s), "+D"(d), "+c"(c) : : "memory");
        mix(s - sbuf); mix(d - dbuf); mix(c); mix_buf(dbuf, 512);
        s = sbuf + 8; d = dbuf + 16; c = n / 8;
        __asm__ volatile("cld\n\trep movsq" : "+S"(s), "+D"(d), "+c"(c) : : "memory");
        mix(s - sbuf); mix(d - dbuf); mix_buf(dbuf, 512);
        s = sbuf + 2; d = dbuf + 2; c = n / 2;
        __asm__ volatile("cld\n\trep movsw" : "+S"(s), "+D"(d), "+c"(c) : : "memory");
        mix(s - sbuf); mix(d - dbuf); mix_buf(dbuf, 512);
        s = sbuf + 4; d = dbuf + 4; c = n / 4;
        __asm__ volatile("cld\n\trep movsl" : "+S"(s), "+D"(d), "+c"(c) : : "memory");
        mix(s - sbuf); mix(d - dbuf); mix_buf(dbuf, 512);
        /* backwards, overlapping (memmove-style) */
        s = sbuf + 300; d = sbuf + 310; c = n;
        __asm__ volatile("std\n\trep movsb\n\tcld" : "+S"(s), "+D"(d), "+c"(c) : : "memory", "cc");
        mix(s - sbuf); mix(d - sbuf); mix_buf(sbuf, 1024);
        /* forwards, overlapping: byte-by-byte semantics replicate the pattern */
        fill(sbuf, sizeof sbuf, 9);
        s = sbuf + 40; d = sbuf + 43; c = n;
        __asm__ volatile("cld\n\trep movsb" : "+S"(s), "+D"(d), "+c"(c) : : "memory");
        mix_buf(sbuf, 1024);
        d = dbuf + 3; c = n;
        __asm__ volatile("cld\n\trep stosb" : "+D"(d), "+c"(c) : "a"(0x5Cu) : "memory");
        mix(d - dbuf); mix_buf(dbuf, 512);
        d = dbuf + 8; c = n / 8;
        __asm__ volatile("cld\n\trep stosq" : "+D"(d), "+c"(c) : "a"(0x0102030405060708ull) : "memory");
        mix(d - dbuf); mix_buf(dbuf, 512);
        /* repe cmpsb: equal prefix of length n/2, then a difference */
        fill(sbuf, sizeof sbuf, 1);
        fill(dbuf, sizeof dbuf, 1);
        dbuf[n / 2] ^= 0x40;
        uint64_t f;
        s = sbuf; d = dbuf; c = n;
        __asm__ volatile("cld\n\tcmp %%rcx, %%rcx\n\trepe cmpsb\n\tpushfq\n\tpopq %[f]"
                         : "+S"(s), "+D"(d), "+c"(c), [f] "=r"(f) : : "memory", "cc");
        mix(s - sbuf); mix(c); mixf(f, ARITH);
        /* repne scasb for a byte present at n/3 (if n > 0) */
        uint8_t want = dbuf[n / 3];
        d = dbuf; c = n;
        __asm__ volatile("cld\n\tcmp %%rcx, %%rcx\n\trepne scasb\n\tpushfq\n\tpopq %[f]"
                         : "+D"(d), "+c"(c), [f] "=r"(f) : "a"(want) : "memory", "cc");
        mix(d - dbuf); mix(c); mixf(f, ARITH);
        /* lodsb/stosb without rep */
        s = sbuf + 10; d = dbuf + 20;
        uint64_t al = 0;
        __asm__ volatile("cld\n\tlodsb\n\tstosb\n\tlodsq" : "+S"(s), "+D"(d), "+a"(al) : : "memory");
        mix(al); mix(s - sbuf); mix(d - dbuf);
    }
}

/* ---- misc: xchg, xadd, cmpxchg, lahf/sahf, flag ops, partial registers ---- */
static void group_misc(void)
{
    for (unsigned i = 0; i < NV; i++)
        for (unsigned j = 0; j < NV; j += 3) {
            uint64_t a = vals[i], b = vals[j], f;
            uint64_t x = a, y = b;
            __asm__ volatile("xchgq %0, %1" : "+r"(x), "+r"(y));
            mix(x); mix(y);
            volatile uint64_t m = a;
            x = b;
            __asm__ volatile("lock xaddq %[x], %[m]\n\tpushfq\n\tpopq %[f]"
                             : [x] "+r"(x), [m] "+m"(m), [f] "=r"(f) : : "cc", "memory");
            mix(x); mix(m); mixf(f, ARITH);
            uint32_t x32 = (uint32_t)b;
            volatile uint32_t m32 = (uint32_t)a;
            __asm__ volatile("xaddl %[x], %[m]\n\tpushfq\n\tpopq %[f]"
                             : [x] "+r"(x32), [m] "+m"(m32), [f] "=r"(f) : : "cc", "memory");
            mix(x32); mix(m32); mixf(f, ARITH);
            /* cmpxchg: equal and unequal */
            m = a;
            uint64_t exp = (j & 1) ? a : b;
            __asm__ volatile("lock cmpxchgq %[n], %[m]\n\tpushfq\n\tpopq %[f]"
                             : "+a"(exp), [m] "+m"(m), [f] "=r"(f) : [n] "r"(~a) : "cc", "memory");
            mix(exp); mix(m); mixf(f, ARITH);
            uint8_t e8 = (uint8_t)b;
            volatile uint8_t m8 = (uint8_t)a;
            __asm__ volatile("cmpxchgb %[n], %[m]\n\tpushfq\n\tpopq %[f]"
                             : "+a"(e8), [m] "+m"(m8), [f] "=r"(f) : [n] "q"((uint8_t)(a + 1)) : "cc", "memory");
            mix(e8); mix(m8); mixf(f, ARITH);
            /* 8-bit high registers and 16-bit writes keep the other bits */
            uint64_t r = a;
            __asm__ volatile("movq %[r], %%rax\n\taddb %%al, %%ah\n\txorb $0x5a, %%ah\n\t"
                             "movw $0x1234, %%ax\n\tincb %%ah\n\tmovq %%rax, %[r]"
                             : [r] "+r"(r) : : "rax", "cc");
            mix(r);
            /* 32-bit writes zero the upper half */
            r = a;
            __asm__ volatile("addl $1, %k0" : "+r"(r) : : "cc"); mix(r);
            r = a;
            __asm__ volatile("movl %k0, %k0" : "+r"(r)); mix(r);
            /* lahf/sahf round trip and flag operations */
            uint64_t ah_out;
            __asm__ volatile("cmpq %[b], %[a]\n\tlahf\n\tmovzbl %%ah, %k[o]"
                             : [o] "=Q"(ah_out) : [a] "r"(a), [b] "r"(b) : "rax", "cc");
            mix(ah_out & (CF | PF | AF | ZF | SF));
            __asm__ volatile("movb %b[v], %%ah\n\tsahf\n\tcmc\n\tpushfq\n\tpopq %[f]"
                             : [f] "=r"(f) : [v] "Q"(a) : "rax", "cc");
            mixf(f, CF | PF | AF | ZF | SF);
            __asm__ volatile("stc\n\tcmc\n\tcmc\n\tpushfq\n\tpopq %[f]\n\tclc" : [f] "=r"(f) : : "cc");
            mixf(f, CF);
            /* lea with every addressing part */
            uint64_t l;
            __asm__ volatile("leaq -0x1234(%[a],%[b],8), %[l]" : [l] "=r"(l) : [a] "r"(a), [b] "r"(b));
            mix(l);
            __asm__ volatile("leal 7(%[a],%[b],2), %k[l]" : [l] "=r"(l) : [a] "r"(a), [b] "r"(b));
            mix(l);
        }
    /* pushfq/popfq: writable bits come back as written (IF stays off). */
    uint64_t f;
    __asm__ volatile("pushfq\n\tpushq $0x0cd7\n\tpopfq\n\tpushfq\n\tpopq %[f]\n\tpopfq" : [f] "=r"(f) : : "cc");
    mixf(f, ARITH | 0x400 /* DF */);
}

#ifdef __SSE2__
/* ---- sse: the packed-integer and scalar-double work gcc emits ---- */
typedef long long v2di __attribute__((vector_size(16)));
static void group_sse(void)
{
    for (unsigned i = 0; i + 1 < NV; i++)
        for (unsigned j = 0; j + 1 < NV; j++) {
            v2di a = { (long long)vals[i], (long long)vals[i + 1] };
            v2di b = { (long long)vals[j], (long long)vals[j + 1] };
            v2di r;
#define SSE2OP(insn)                                                                   \
    r = a;                                                                            \
    __asm__(insn " %[b], %[r]" : [r] "+x"(r) : [b] "x"(b));                           \
    mix((uint64_t)r[0]); mix((uint64_t)r[1]);
            SSE2OP("paddd") SSE2OP("paddq") SSE2OP("psubb") SSE2OP("psubq") SSE2OP("pmuludq")
            SSE2OP("pand") SSE2OP("pandn") SSE2OP("por") SSE2OP("pxor") SSE2OP("pcmpeqd")
            SSE2OP("pcmpeqb") SSE2OP("pcmpgtd") SSE2OP("punpckldq") SSE2OP("punpckhqdq")
            SSE2OP("punpcklbw") SSE2OP("pmullw") SSE2OP("paddusb") SSE2OP("psubsw")
            SSE2OP("pmaxub") SSE2OP("pminsw") SSE2OP("packuswb") SSE2OP("pavgb")
            r = a;
            __asm__("pshufd $0x1b, %[r], %[r]" : [r] "+x"(r)); mix((uint64_t)r[0]); mix((uint64_t)r[1]);
            r = a;
            __asm__("psrlq $7, %[r]" : [r] "+x"(r)); mix((uint64_t)r[0]); mix((uint64_t)r[1]);
            r = a;
            __asm__("psrld $3, %[r]\n\tpsllw $5, %[r]\n\tpsrad $9, %[r]" : [r] "+x"(r));
            mix((uint64_t)r[0]); mix((uint64_t)r[1]);
            r = a;
            __asm__("pslldq $3, %[r]\n\tpsrldq $5, %[r]" : [r] "+x"(r)); mix((uint64_t)r[0]); mix((uint64_t)r[1]);
            int mask;
            __asm__("pmovmskb %[a], %[m]" : [m] "=r"(mask) : [a] "x"(a)); mix((unsigned)mask);
            /* scalar doubles from integers: exact IEEE results */
            double x = (double)(int64_t)vals[i], y = (double)(int32_t)vals[j] + 0.5;
            double s = x + y, p = x * y, q = y != 0 ? x / y : 0, rt = 0;
            double ay = y < 0 ? -y : y;
            __asm__("sqrtsd %[v], %[r]" : [r] "=x"(rt) : [v] "x"(ay));
            int64_t t;
            __asm__("cvttsd2si %[v], %[t]" : [t] "=r"(t) : [v] "x"(q));
            uint64_t bits[5];
            memcpy(&bits[0], &s, 8); memcpy(&bits[1], &p, 8); memcpy(&bits[2], &q, 8);
            memcpy(&bits[3], &rt, 8); bits[4] = (uint64_t)t;
            for (int k = 0; k < 5; k++) mix(bits[k]);
            uint64_t f;
            __asm__("ucomisd %[b], %[a]\n\tpushfq\n\tpopq %[f]" : [f] "=r"(f) : [a] "x"(x), [b] "x"(y) : "cc");
            mixf(f, CF | PF | ZF | OF | SF | AF);
        }
}
#endif

struct group {
    const char *name;
    void (*run)(void);
    uint32_t expect;
};

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    static const struct group groups[] = {
        { "alu", group_alu, 0x59ff6245u },       { "unary", group_unary, 0xec2c7497u }, { "shift", group_shift, 0x031993a7u },
        { "dshift", group_dshift, 0xf78fcdc5u }, { "muldiv", group_muldiv, 0x6699d04du }, { "bits", group_bits, 0xbb2658b4u },
        { "cond", group_cond, 0x7ce0d207u },     { "string", group_string, 0x0a42226eu }, { "misc", group_misc, 0xf432417bu },
#ifdef __SSE2__
        { "sse", group_sse, 0xd412e4bfu },
#endif
    };
    crc_init();
    printf("isa: %u groups\n", (unsigned)RT_ARRAY_SIZE(groups));
    int bad = 0;
    for (unsigned g = 0; g < RT_ARRAY_SIZE(groups); g++) {
        g_crc = 0;
        groups[g].run();
        bool ok = g_crc == groups[g].expect;
        printf("  %-7s %08x %s\n", groups[g].name, g_crc, ok ? "ok" : "FAIL");
        bad |= !ok;
    }
    printf("isa: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
