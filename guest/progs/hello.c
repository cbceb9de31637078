/*
 * hello: the smallest guest. Prints a greeting from vCPU 0, exercises the
 * console formatting the other guests rely on, and checks it with snprintf.
 * Exit 0, or 1 if a formatted string differs from the expected text.
 */
#include "rt.h"

struct fmt_case {
    const char *expect;
    char got[64];
};

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;

    printf("Hello from ToyVmm guest!\n");

    struct fmt_case c[8];
    int i = 0;
    c[i].expect = "-42 42 2a 2A";
    snprintf(c[i++].got, 64, "%d %u %x %X", -42, 42u, 42u, 42u);
    c[i].expect = "18446744073709551615 ffffffffffffffff";
    snprintf(c[i++].got, 64, "%llu %lx", ~0ull, ~0ul);
    c[i].expect = "-9223372036854775808";
    snprintf(c[i++].got, 64, "%ld", (long)(-9223372036854775807L - 1));
    c[i].expect = "[   7] [7   ] [0007] [+7]";
    snprintf(c[i++].got, 64, "[%4d] [%-4d] [%04d] [%+d]", 7, 7, 7, 7);
    c[i].expect = "[ab] [  abc] [x] [%]";
    snprintf(c[i++].got, 64, "[%.2s] [%5s] [%c] [%%]", "abc", "abc", 'x');
    c[i].expect = "0x1000 0xdeadbeef 0x0";
    snprintf(c[i++].got, 64, "%p %#x %p", (void *)0x1000, 0xdeadbeefu, (void *)0);
    c[i].expect = "00ff 0377 -1 65535";
    snprintf(c[i++].got, 64, "%04hhx %04o %hd %hu", 0xff, 0xff, (short)-1, (unsigned short)65535);
    c[i].expect = "12345678901234";
    snprintf(c[i++].got, 64, "%zu%ju", (size_t)1234567, (uintmax_t)8901234);

    int bad = 0;
    for (int k = 0; k < i; k++) {
        if (strcmp(c[k].got, c[k].expect) != 0) {
            printf("format %d: got \"%s\", expected \"%s\"\n", k, c[k].got, c[k].expect);
            bad = 1;
        }
    }
    char small[6];
    int n = snprintf(small, sizeof small, "%s", "truncated");
    if (n != 9 || strcmp(small, "trunc") != 0) {
        printf("snprintf truncation wrong (%d, \"%s\")\n", n, small);
        bad = 1;
    }

    printf("vcpus: %u, ram: %llu MiB\n", ncpu, (unsigned long long)(ram_bytes / RT_MIB));
    printf("formatting: %s\n", bad ? "FAIL" : "ok");
    printf("Goodbye.\n");
    return bad;
}
