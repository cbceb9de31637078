/* Selector values shared by entry.S and kernel.h (keep in step). */
#define SEL_UDATA 0x23
#define SEL_UCODE 0x2B
