# Compiler and linker flags of every ToyVmm guest (GUEST-ABI.md, "Binary
# format"). Shared by the shipped guests (guest/Makefile) and by guests built
# outside the tree with toyvmm-guest.mk, so both are compiled alike.
#
# Why each flag: no hosted libc or startup files (the runtime is the whole
# environment); a fixed-address static ET_EXEC (the loader copies each
# PT_LOAD to its p_paddr and does not relocate); no red zone (trap handlers
# of guests that install an IDT run on the interrupted stack); no stack
# protector or CET notes (no TLS, no PT_NOTE); no unwind tables (nothing to
# unwind with, and no .eh_frame segment).

TOYVMM_CFLAGS := -ffreestanding -fno-builtin -nostdlib -fno-pie -mno-red-zone \
	-fno-stack-protector -fcf-protection=none -mcmodel=small \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -fno-common
# Integer code only: the default, as in the shipped <g>.elf builds. Guests
# that let gcc use SSE2 (the <g>-sse.elf builds) leave it out.
TOYVMM_GR := -mgeneral-regs-only
TOYVMM_LDFLAGS := -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-z,noexecstack \
	-Wl,-z,max-page-size=4096
