/*
 * myguest: a ToyVmm guest built outside the tree with the guest SDK.
 * main runs on every vCPU at once; vCPU 0 does the work here. Its return
 * value is the VM's exit status.
 */
#include "rt.h"

int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)
{
    if (cpu != 0)
        return 0;
    printf("Hello from my guest: %u vCPUs, %llu MiB of RAM\n",
           ncpu, (unsigned long long)(ram_bytes / RT_MIB));

    /* Free RAM past the image, identity mapped: a pointer is also the
     * guest-physical address the hypercalls take. */
    uint64_t *mem = rt_mem_base();
    uint64_t bytes = 1 * RT_MIB, words = bytes / 8;

    rt_phase("write");          /* the VMM counts what follows as "write" */
    for (uint64_t i = 0; i < words; i++)
        mem[i] = i * 3 + 1;

    rt_phase("pageout");
    long r = rt_pageout(mem, bytes);   /* to swap; the contents stay */
    uint64_t wrong = 0;
    for (uint64_t i = 0; i < words; i++)
        wrong += mem[i] != i * 3 + 1;
    printf("after PAGEOUT: %s\n", r >= 0 && wrong == 0 ? "contents kept" : "FAIL");

    rt_phase("discard");
    r = rt_discard(mem, bytes);        /* dropped: reads as zero */
    uint64_t nonzero = 0;
    for (uint64_t i = 0; i < words; i++)
        nonzero += mem[i] != 0;
    printf("after DISCARD: %s\n", r >= 0 && nonzero == 0 ? "zeroes" : "FAIL");

    return wrong || nonzero ? 1 : 0;   /* or rt_exit(status) from anywhere */
}
