# ToyVmm guest SDK: build ToyVmm guests in a project of your own.
#
#   TOYVMM_SDK := /path/to/toyvmm/guest/sdk
#   include $(TOYVMM_SDK)/toyvmm-guest.mk
#   $(eval $(call toyvmm_guest,myguest,myguest.c util.c))
#
# Then `make` builds, in the current directory,
#   myguest.elf     the guest: bin/toyvmm run myguest.elf
#   myguest.native  the same program as a static Linux executable, to compare
#                   with: ./myguest.native [ncpu [ram_mib]] (default 1 64)
# and `make clean` removes them. One toyvmm_guest line per guest; sources may
# be C (.c) or assembly (.S) and may include "rt.h", the runtime's header.
#
# Variables (set them before the include, or on the make command line):
#   TOYVMM_SSE=1  let gcc use SSE2 (default: general registers only, like the
#                 shipped <g>.elf builds)
#   TOYVMM_OPT    optimisation (default -O2)
#   TOYVMM_WARN   warnings (default -Wall -Wextra)
#   CFLAGS        more flags for your sources (-DN=4, -Iinclude, -g, ...)
#   TOYVMM_OBJ    where objects and dependency files go (default obj)
#
# The SDK is built by `make` (or `make -C guest`) in the ToyVmm tree; see
# "Write your own guest" in ToyVmm's README.md.

# This file's directory, when TOYVMM_SDK is not set.
TOYVMM_SDK ?= $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
include $(TOYVMM_SDK)/toyvmm-flags.mk

ifeq ($(wildcard $(TOYVMM_SDK)/lib/toyvmm.ld),)
$(error the ToyVmm guest SDK in $(TOYVMM_SDK) is not built: run `make` in the ToyVmm tree first)
endif

TOYVMM_OPT ?= -O2
TOYVMM_WARN ?= -Wall -Wextra
TOYVMM_OBJ ?= obj

TOYVMM_FLAVOUR := $(if $(filter 1,$(TOYVMM_SSE)),-sse)
TOYVMM_VM_LIB := $(TOYVMM_SDK)/lib/vm$(TOYVMM_FLAVOUR)
TOYVMM_NATIVE_LIB := $(TOYVMM_SDK)/lib/native$(TOYVMM_FLAVOUR)
TOYVMM_LD_SCRIPT := $(TOYVMM_SDK)/lib/toyvmm.ld
TOYVMM_COMPILE = $(CC) -std=gnu11 $(TOYVMM_OPT) $(TOYVMM_WARN) $(TOYVMM_CFLAGS) \
	$(if $(TOYVMM_FLAVOUR),,$(TOYVMM_GR)) -I$(TOYVMM_SDK)/include $(CFLAGS) -MMD -MP

# Goals: `all` gets each guest's outputs, `clean` removes them; rules with no
# recipe, so a Makefile that has its own all or clean keeps it.
.PHONY: all clean toyvmm-clean
all:
clean: toyvmm-clean
toyvmm-clean:
	rm -rf $(TOYVMM_CLEAN)

# $(1) = guest name, $(2) = its sources. The objects are compiled once and
# linked twice: with crt0 and the VM runtime under the guest link script, and
# with the native start and runtime (the flags are the same for both).
define toyvmm_guest
TOYVMM_OBJS_$(1) := $$(patsubst %,$(TOYVMM_OBJ)/$(1)/%.o,$$(basename $(2)))
TOYVMM_CLEAN += $(1).elf $(1).native $(TOYVMM_OBJ)/$(1)
all: $(1).elf $(1).native

$(TOYVMM_OBJ)/$(1)/%.o: %.c $(TOYVMM_SDK)/include/rt.h
	@mkdir -p $$(dir $$@)
	$$(TOYVMM_COMPILE) -c $$< -o $$@
$(TOYVMM_OBJ)/$(1)/%.o: %.S
	@mkdir -p $$(dir $$@)
	$$(TOYVMM_COMPILE) -c $$< -o $$@

$(1).elf: $(TOYVMM_VM_LIB)/crt0.o $$(TOYVMM_OBJS_$(1)) $(TOYVMM_VM_LIB)/libtoyvmm.a $(TOYVMM_LD_SCRIPT)
	$$(CC) $(TOYVMM_LDFLAGS) -Wl,-T,$(TOYVMM_LD_SCRIPT) \
		$(TOYVMM_VM_LIB)/crt0.o $$(TOYVMM_OBJS_$(1)) $(TOYVMM_VM_LIB)/libtoyvmm.a -o $$@
$(1).native: $(TOYVMM_NATIVE_LIB)/start.o $$(TOYVMM_OBJS_$(1)) $(TOYVMM_NATIVE_LIB)/libtoyvmm.a
	$$(CC) $(TOYVMM_LDFLAGS) \
		$(TOYVMM_NATIVE_LIB)/start.o $$(TOYVMM_OBJS_$(1)) $(TOYVMM_NATIVE_LIB)/libtoyvmm.a -o $$@

-include $$(TOYVMM_OBJS_$(1):.o=.d)
endef
