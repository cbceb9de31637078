#!/bin/sh
# Checks guest ELFs against the binary-format rules of GUEST-ABI.md with
# readelf: ELF64, EM_X86_64, ET_EXEC, no PT_INTERP, every PT_LOAD with
# p_paddr == p_vaddr at or above 1 MiB, no overlap. (The upper bound,
# ram_bytes - 1 MiB, depends on the run; this prints each image's end so it
# can be compared with the guest's recommended RAM.)
set -eu
status=0
for f in "$@"; do
    hdr=$(readelf -h "$f")
    bad=""
    echo "$hdr" | grep -q 'Class: *ELF64' || bad="$bad not-ELF64"
    echo "$hdr" | grep -q 'Type: *EXEC' || bad="$bad not-ET_EXEC"
    echo "$hdr" | grep -q 'Machine: *Advanced Micro Devices X86-64' || bad="$bad not-EM_X86_64"
    phdrs=$(readelf -lW "$f")
    echo "$phdrs" | grep -q ' INTERP ' && bad="$bad has-PT_INTERP"
    # LOAD offset vaddr paddr filesz memsz flags align
    loads=$(echo "$phdrs" | awk '$1 == "LOAD" { print $3, $4, $6 }')
    res=$(echo "$loads" | awk '
        function hex(s,   i, c, v) { v = 0; s = tolower(substr(s, 3));
            for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c }
            return v }
        NF == 3 { v = hex($1); p = hex($2); m = hex($3);
            if (m == 0) next;
            if (v != p) print "paddr!=vaddr";
            if (v < 1048576) print "below-1MiB";
            for (i = 0; i < n; i++) if (v < e[i] && s[i] < v + m) print "overlap";
            s[n] = v; e[n] = v + m; n++;
            if (v + m > top) top = v + m }
        END { printf "end=0x%x\n", top }')
    end=$(echo "$res" | grep '^end=' | cut -d= -f2)
    bad="$bad $(echo "$res" | grep -v '^end=' | tr '\n' ' ')"
    bad=$(echo "$bad" | xargs)
    if [ -n "$bad" ]; then
        echo "FAIL $f: $bad"
        status=1
    else
        echo "ok   $f (image ends at $end)"
    fi
done
exit $status
