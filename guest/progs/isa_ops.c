/*
 * isa groups muldiv, bits, cond, string, misc and sse (see isa.c).
 */
#include "isa.h"

/* ---- mul, imul, div, idiv ---- */
void group_muldiv(void)
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

void group_bits(void)
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

void group_cond(void)
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

void group_string(void)
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
void group_misc(void)
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
void group_sse(void)
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

