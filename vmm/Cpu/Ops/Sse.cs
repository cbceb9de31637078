using Iced.Intel;

namespace ToyVmm.Cpu.Ops;

/// <summary>SSE/SSE2 as gcc emits it, and fxsave/fxrstor.</summary>
internal static unsafe partial class Sse
{
    public static void Register()
    {
        // movsd and cmpsd name both a string instruction and an SSE2 one.
        Binder.Add(Mnemonic.Movsd, (in Instruction i, Op* o) => i.Code == Code.Movsd_m32_m32 ? StringOps.Bind(i, o, 0) : BindSse(i, o));
        Binder.Add(Mnemonic.Cmpsd, (in Instruction i, Op* o) => i.Code == Code.Cmpsd_m32_m32 ? StringOps.Bind(i, o, 3) : BindSse(i, o));
        RegisterSse();
    }

    static partial void RegisterSse();

    private static bool BindSse(in Instruction ins, Op* op) => false;
}
