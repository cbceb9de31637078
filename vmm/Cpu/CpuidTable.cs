namespace ToyVmm.Cpu;

/// <summary>
/// cpuid answers. Leaves 0, 1, 0x80000000 and 0x80000001 report only what the
/// interpreter implements (GUEST-ABI.md); 0x40000000 carries the ToyVmm signature.
/// </summary>
internal static unsafe class CpuidTable
{
    private static uint Str(string four) => (uint)(four[0] | four[1] << 8 | four[2] << 16 | four[3] << 24);

    // Leaf 1 EDX: FPU state via fxsave only is not x87 support, so FPU stays clear.
    // PSE(3) TSC(4) MSR(5) PAE(6) CX8(8) CMOV(15) CLFSH(19) MMX(23) FXSR(24) SSE(25) SSE2(26).
    // MMX (Ops/Mmx*.cs) includes SSE's and SSE2's forms on MMX registers, which SSE and SSE2 promise too.
    public const uint Leaf1Edx = 1u << 3 | 1u << 4 | 1u << 5 | 1u << 6 | 1u << 8 | 1u << 15 | 1u << 19 | 1u << 23 | 1u << 24 | 1u << 25 | 1u << 26;
    // Leaf 1 ECX: CX16(13) POPCNT(23) hypervisor(31)
    public const uint Leaf1Ecx = 1u << 13 | 1u << 23 | 1u << 31;
    // 0x80000001 EDX: SYSCALL(11) NX(20) 1GB pages(26) RDTSCP(27) LM(29); ECX: LAHF(0) LZCNT(5)
    public const uint Ext1Edx = 1u << 11 | 1u << 20 | 1u << 26 | 1u << 27 | 1u << 29;
    public const uint Ext1Ecx = 1u << 0 | 1u << 5;

    public static void Query(CpuState* s, uint leaf, uint sub, out uint a, out uint b, out uint c, out uint d)
    {
        a = b = c = d = 0;
        switch (leaf)
        {
            case 0:
                a = 1;
                b = Str("ToyV"); d = Str("mmTo"); c = Str("yVmm");
                break;
            case 1:
                a = 0x000006F1;   // family 6, model 15, stepping 1
                int index = Vcpu.Of(s).Index;
                b = (uint)(index & 0xFF) << 24 | 1u << 16 | 8u << 8;   // APIC id, 1 logical CPU, clflush 64 bytes
                c = Leaf1Ecx;
                d = Leaf1Edx;
                break;
            case 0x40000000:
                a = 0x40000000;
                b = Str("ToyV"); c = Str("mmTo"); d = Str("yVmm");
                break;
            case 0x80000000:
                a = 0x80000008;
                break;
            case 0x80000001:
                c = Ext1Ecx;
                d = Ext1Edx;
                break;
            case 0x80000008:
                a = 0x3030;   // 48-bit physical, 48-bit virtual
                break;
        }
    }
}
