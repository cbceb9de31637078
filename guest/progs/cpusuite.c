/*
 * cpusuite: a CoreMark-like CPU workload with known answers.
 *
 * Every iteration rebuilds its inputs from fixed seeds and runs six kernels:
 *   list    linked list of 512 nodes: find, reverse, merge sort by value,
 *           merge sort back by index, CRC of the walk;
 *   matrix  48x48 int32 multiply, scale and add, CRC of the result;
 *   state   a switch-driven lexer over 4 KiB of generated text (integers,
 *           decimals, hex, exponents, junk), counting accepted tokens;
 *   sort    quicksort + insertion sort of 2048 keys, checked sorted;
 *   crc     table-driven CRC-32 of 8 KiB, checked against a bitwise CRC;
 *   sieve   primes below 65536 (6542 of them).
 * Each kernel's 32-bit result must equal the constant measured once from a
 * -O0 native build (EXPECT_* below); every iteration is checked, so a wrong
 * instruction anywhere shows up as a FAIL line. CPUSUITE_ITERS (a build
 * parameter) sets the iteration count. Exit 0 when every iteration matched.
 * Single vCPU: the others return at once.
 */
#include "rt.h"

#ifndef CPUSUITE_ITERS
#define CPUSUITE_ITERS 10
#endif

#define EXPECT_LIST 0x36b91432u
#define EXPECT_MATRIX 0x6a09ce29u
#define EXPECT_STATE 0x764245f8u
#define EXPECT_SORT 0x0f35aa36u
#define EXPECT_CRC 0xceafde25u
#define EXPECT_SIEVE 0x5197d4b3u

/* ---- CRC-32 (also used to fold every kernel's output) ---- */
static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_bytes(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *b = p;
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *b++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint32_t crc_u32(uint32_t crc, uint32_t v)
{
    return crc_bytes(crc, &v, sizeof v);
}

static uint32_t crc_bitwise(const uint8_t *b, size_t n)
{
    uint32_t crc = ~0u;
    for (size_t i = 0; i < n; i++) {
        crc ^= b[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    return ~crc;
}

/* 32-bit LCG: the input generator of every kernel. */
static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s;
}

/* ---- list ---- */
#define LIST_N 512
struct node {
    struct node *next;
    int32_t value;
    uint32_t index;
};
static struct node pool[LIST_N];

static struct node *list_merge(struct node *a, struct node *b, int by_value)
{
    struct node head, *t = &head;
    while (a && b) {
        int take_a = by_value ? (a->value < b->value || (a->value == b->value && a->index < b->index))
                              : a->index < b->index;
        if (take_a) { t->next = a; a = a->next; }
        else { t->next = b; b = b->next; }
        t = t->next;
    }
    t->next = a ? a : b;
    return head.next;
}

static struct node *list_sort(struct node *l, int by_value)
{
    if (!l || !l->next)
        return l;
    struct node *slow = l, *fast = l->next;
    while (fast && fast->next) {
        slow = slow->next;
        fast = fast->next->next;
    }
    struct node *back = slow->next;
    slow->next = NULL;
    return list_merge(list_sort(l, by_value), list_sort(back, by_value), by_value);
}

static uint32_t kernel_list(void)
{
    uint32_t seed = 0x1157u;
    for (uint32_t i = 0; i < LIST_N; i++) {
        pool[i].index = i;
        pool[i].value = (int32_t)(lcg(&seed) >> 8) - (1 << 23);
        pool[i].next = i + 1 < LIST_N ? &pool[i + 1] : NULL;
    }
    struct node *l = &pool[0];
    uint32_t crc = 0;
    /* find: the position of a few values, -1 when absent */
    for (int q = 0; q < 8; q++) {
        int32_t want = pool[(q * 97) % LIST_N].value + (q & 1);
        int32_t pos = 0, found = -1;
        for (struct node *n = l; n; n = n->next, pos++)
            if (n->value == want) { found = pos; break; }
        crc = crc_u32(crc, (uint32_t)found);
    }
    /* reverse */
    struct node *r = NULL;
    while (l) {
        struct node *nx = l->next;
        l->next = r;
        r = l;
        l = nx;
    }
    l = r;
    crc = crc_u32(crc, l->index);
    l = list_sort(l, 1);
    int32_t prev = -0x7FFFFFFF - 1;
    for (struct node *n = l; n; n = n->next) {
        if (n->value < prev)
            crc ^= 0xBAD1u;
        prev = n->value;
        crc = crc_u32(crc, (uint32_t)n->value ^ n->index);
    }
    l = list_sort(l, 0);
    uint32_t i = 0;
    for (struct node *n = l; n; n = n->next, i++)
        if (n->index != i)
            crc ^= 0xBAD2u;
    return crc_u32(crc, i);
}

/* ---- matrix ---- */
#define MAT_N 48
static int32_t ma[MAT_N][MAT_N], mb[MAT_N][MAT_N], mc[MAT_N][MAT_N];

static uint32_t kernel_matrix(void)
{
    uint32_t seed = 0xA7A7u;
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            ma[i][j] = (int32_t)(lcg(&seed) >> 20) - 2048;
            mb[i][j] = (int32_t)(lcg(&seed) >> 21) - 1024;
        }
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            int32_t s = 0;
            for (int k = 0; k < MAT_N; k++)
                s += ma[i][k] * mb[k][j];
            mc[i][j] = s;
        }
    /* scale-and-add, then a bit extraction like CoreMark's matrix_test */
    uint32_t crc = 0;
    int64_t total = 0;
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++) {
            mc[i][j] = mc[i][j] * 3 + ma[j][i];
            total += mc[i][j];
            crc = crc_u32(crc, (uint32_t)(mc[i][j] >> 2) & 0x7FFFF);
        }
    return crc_u32(crc, (uint32_t)total ^ (uint32_t)((uint64_t)total >> 32));
}

/* ---- state machine ---- */
#define TEXT_N 4096
static char text[TEXT_N];

enum st { S_START, S_INT, S_SIGN, S_DOT, S_FRAC, S_EXP, S_EXPSIGN, S_EXPINT, S_HEX0, S_HEX, S_BAD, S_COUNT };

static void make_text(void)
{
    static const char *pieces[] = { "1234", "-17", "+3.25", "6.02e23", "1e-9", "0x1F",
                                    "0xg", "--5", "3.", ".5", "7e", "abc", "42", "0", "9.9E+9" };
    uint32_t seed = 0x57A7Eu;
    size_t n = 0;
    while (n + 16 < TEXT_N) {
        const char *p = pieces[lcg(&seed) % RT_ARRAY_SIZE(pieces)];
        while (*p)
            text[n++] = *p++;
        text[n++] = (lcg(&seed) & 3) ? ',' : ' ';
    }
    while (n < TEXT_N)
        text[n++] = ' ';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static uint32_t kernel_state(void)
{
    make_text();
    uint32_t counts[S_COUNT] = { 0 };
    uint32_t transitions = 0;
    enum st s = S_START;
    for (size_t i = 0; i <= TEXT_N; i++) {
        char c = i < TEXT_N ? text[i] : ',';
        if (c == ',' || c == ' ') {
            counts[s]++;
            s = S_START;
            continue;
        }
        enum st was = s;
        switch (s) {
        case S_START:
            if (c == '0' && i + 1 < TEXT_N && (text[i + 1] == 'x' || text[i + 1] == 'X')) s = S_HEX0;
            else if (is_digit(c)) s = S_INT;
            else if (c == '+' || c == '-') s = S_SIGN;
            else if (c == '.') s = S_DOT;
            else s = S_BAD;
            break;
        case S_SIGN:
            s = is_digit(c) ? S_INT : c == '.' ? S_DOT : S_BAD;
            break;
        case S_INT:
            if (is_digit(c)) break;
            s = c == '.' ? S_FRAC : (c == 'e' || c == 'E') ? S_EXP : S_BAD;
            break;
        case S_DOT:
            s = is_digit(c) ? S_FRAC : S_BAD;
            break;
        case S_FRAC:
            if (is_digit(c)) break;
            s = (c == 'e' || c == 'E') ? S_EXP : S_BAD;
            break;
        case S_EXP:
            s = (c == '+' || c == '-') ? S_EXPSIGN : is_digit(c) ? S_EXPINT : S_BAD;
            break;
        case S_EXPSIGN:
            s = is_digit(c) ? S_EXPINT : S_BAD;
            break;
        case S_EXPINT:
            if (!is_digit(c)) s = S_BAD;
            break;
        case S_HEX0:
            s = (c == 'x' || c == 'X') ? S_HEX : S_BAD;
            break;
        case S_HEX:
            if (!is_hex(c)) s = S_BAD;
            break;
        default:
            break;
        }
        transitions += s != was;
    }
    uint32_t crc = crc_u32(0, transitions);
    for (int k = 0; k < S_COUNT; k++)
        crc = crc_u32(crc, counts[k]);
    return crc;
}

/* ---- sort ---- */
#define SORT_N 2048
static uint32_t keys[SORT_N];

static void insertion(uint32_t *a, int lo, int hi)
{
    for (int i = lo + 1; i <= hi; i++) {
        uint32_t v = a[i];
        int j = i - 1;
        while (j >= lo && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

static void quicksort(uint32_t *a, int lo, int hi)
{
    while (hi - lo > 16) {
        int mid = lo + (hi - lo) / 2;
        /* median of three */
        if (a[mid] < a[lo]) { uint32_t t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (a[hi] < a[lo]) { uint32_t t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (a[hi] < a[mid]) { uint32_t t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
        uint32_t p = a[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) {
                uint32_t t = a[i]; a[i] = a[j]; a[j] = t;
                i++;
                j--;
            }
        }
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
    insertion(a, lo, hi);
}

static uint32_t kernel_sort(void)
{
    uint32_t seed = 0x5027u;
    uint64_t sum_before = 0, sum_after = 0;
    for (int i = 0; i < SORT_N; i++) {
        keys[i] = lcg(&seed) % 100000u;
        sum_before += keys[i];
    }
    quicksort(keys, 0, SORT_N - 1);
    uint32_t crc = 0, unsorted = 0;
    for (int i = 0; i < SORT_N; i++) {
        sum_after += keys[i];
        if (i && keys[i - 1] > keys[i])
            unsorted++;
        if ((i & 15) == 0)
            crc = crc_u32(crc, keys[i]);
    }
    crc = crc_u32(crc, unsorted);
    return crc_u32(crc, (uint32_t)(sum_before - sum_after) + keys[SORT_N / 2]);
}

/* ---- crc ---- */
#define CRC_N 8192
static uint8_t crc_buf[CRC_N];

static uint32_t kernel_crc(void)
{
    uint32_t seed = 0xC5Cu;
    for (int i = 0; i < CRC_N; i++)
        crc_buf[i] = (uint8_t)(lcg(&seed) >> 24);
    uint32_t a = crc_bytes(0, crc_buf, CRC_N);
    uint32_t b = crc_bitwise(crc_buf, CRC_N / 8);
    uint32_t c = crc_bytes(0, crc_buf, CRC_N / 8);
    return b == c ? a : a ^ 0xBAD3u;
}

/* ---- sieve ---- */
#define SIEVE_N 65536
static uint8_t composite[SIEVE_N];

static uint32_t kernel_sieve(void)
{
    memset(composite, 0, sizeof composite);
    uint32_t count = 0, last = 0;
    for (uint32_t i = 2; i < SIEVE_N; i++) {
        if (composite[i])
            continue;
        count++;
        last = i;
        for (uint32_t j = i * i; j < SIEVE_N; j += i)
            composite[j] = 1;
    }
    return crc_u32(crc_u32(0, count), last);
}

/* ---- driver ---- */
struct kernel {
    const char *name;
    uint32_t (*run)(void);
    uint32_t expect;
};

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    static const struct kernel ks[] = {
        { "list", kernel_list, EXPECT_LIST },     { "matrix", kernel_matrix, EXPECT_MATRIX },
        { "state", kernel_state, EXPECT_STATE },  { "sort", kernel_sort, EXPECT_SORT },
        { "crc", kernel_crc, EXPECT_CRC },        { "sieve", kernel_sieve, EXPECT_SIEVE },
    };
    enum { NK = sizeof ks / sizeof ks[0] };
    uint32_t wrong[NK] = { 0 }, got[NK] = { 0 };
    uint32_t total = 0;

    crc_init();
    printf("cpusuite: %u iterations\n", (unsigned)CPUSUITE_ITERS);
    for (uint32_t it = 0; it < CPUSUITE_ITERS; it++) {
        for (int k = 0; k < NK; k++) {
            uint32_t r = ks[k].run();
            if (it == 0)
                got[k] = r;
            if (r != ks[k].expect)
                wrong[k]++;
            total = crc_u32(total, r);
        }
    }
    int bad = 0;
    for (int k = 0; k < NK; k++) {
        printf("  %-6s %08x %s", ks[k].name, got[k], wrong[k] ? "FAIL" : "ok");
        if (wrong[k])
            printf(" (%u of %u iterations wrong, expected %08x)", wrong[k],
                   (unsigned)CPUSUITE_ITERS, ks[k].expect);
        printf("\n");
        bad |= wrong[k] != 0;
    }
    printf("cpusuite: checksum %08x\n", total);
    printf("cpusuite: %s\n", bad ? "FAIL" : "PASS");
    return bad;
}
