/*
 * Test patterns: write a region with values that depend only on each word's
 * index and a round number, then count the words that no longer hold them.
 * The memory guests that check what survives PAGEOUT and DISCARD (pageout,
 * discard) share these loops, so both check the same way in both backends.
 */
#include "rt.h"

uint64_t rt_pattern(uint64_t word, uint64_t round)
{
    uint64_t x = (word + 1) * 0x9E3779B97F4A7C15ull + round * 0x632BE59BD9B4E019ull;
    return (x ^ (x >> 31)) | 1; /* never zero: zero means "dropped" */
}

void rt_pattern_fill(volatile uint64_t *mem, uint64_t first, uint64_t count, uint64_t round)
{
    for (uint64_t i = first; i < first + count; i++)
        mem[i] = rt_pattern(i, round);
}

uint64_t rt_pattern_verify(volatile uint64_t *mem, uint64_t first, uint64_t count, uint64_t round)
{
    uint64_t wrong = 0;
    for (uint64_t i = first; i < first + count; i++)
        wrong += mem[i] != rt_pattern(i, round);
    return wrong;
}
