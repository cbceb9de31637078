using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>An ALU operation's result, and its lazy flags for when they turn out to be needed.</summary>
internal unsafe interface IPureAlu
{
    static abstract ulong Calc(ulong d, ulong x);
    static abstract void SetFlags<T>(CpuState* s, ulong r, ulong d, ulong x) where T : struct, ISz;
}
internal unsafe struct PAdd : IPureAlu
{
    public static ulong Calc(ulong d, ulong x) => d + x;
    public static void SetFlags<T>(CpuState* s, ulong r, ulong d, ulong x) where T : struct, ISz => Flags.Set<T>(s, Flags.Add, r, d, x);
}
internal unsafe struct PSub : IPureAlu
{
    public static ulong Calc(ulong d, ulong x) => d - x;
    public static void SetFlags<T>(CpuState* s, ulong r, ulong d, ulong x) where T : struct, ISz => Flags.Set<T>(s, Flags.Sub, r, d, x);
}
internal unsafe struct POr : IPureAlu
{
    public static ulong Calc(ulong d, ulong x) => d | x;
    public static void SetFlags<T>(CpuState* s, ulong r, ulong d, ulong x) where T : struct, ISz => Flags.SetLogic<T>(s, r);
}
internal unsafe struct PAnd : IPureAlu
{
    public static ulong Calc(ulong d, ulong x) => d & x;
    public static void SetFlags<T>(CpuState* s, ulong r, ulong d, ulong x) where T : struct, ISz => Flags.SetLogic<T>(s, r);
}
internal unsafe struct PXor : IPureAlu
{
    public static ulong Calc(ulong d, ulong x) => d ^ x;
    public static void SetFlags<T>(CpuState* s, ulong r, ulong d, ulong x) where T : struct, ISz => Flags.SetLogic<T>(s, r);
}

/// <summary>
/// Dead-flag elision at decode time: a register-only add/or/and/sub/xor whose next
/// instruction in the block is a register-only add/or/and/sub/xor/cmp/test (which cannot
/// fault, reads no flag and replaces every lazy flag) is rebound to a handler that stores
/// only its result. The flags it would have stored are overwritten before anything can
/// observe them: no fault, request or exit can come between the two instructions.
/// </summary>
internal static unsafe class DeadFlags
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RR<P, T>(CpuState* s, Op* op) where P : struct, IPureAlu where T : struct, ISz
        => Run<P, T>(s, op, Reg.Get<T>(s, op->R), Reg.Get<T>(s, op->R2));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* RI<P, T>(CpuState* s, Op* op) where P : struct, IPureAlu where T : struct, ISz
        => Run<P, T>(s, op, Reg.Get<T>(s, op->R), (ulong)(long)op->Imm);

    // The next op's handler is read once and run: when the block was invalidated meanwhile it
    // is the bail-out, the instruction decoded again in its place may read the flags, so they
    // are stored after all; otherwise the handler read is the flag-overwriting instruction.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Op* Run<P, T>(CpuState* s, Op* op, ulong d, ulong x) where P : struct, IPureAlu where T : struct, ISz
    {
        ulong r = P.Calc(d, x);
        Op* next = op + 1;
        var h = next->H;
        // Compared as addresses: invalidation stores this very field's value (CodeCache.InvalidatePage).
        if ((nint)h == (nint)Control.BailOutHandler) P.SetFlags<T>(s, r, d, x);
        Reg.Set<T>(s, op->R, r);
        s->CurOp = next;
        return h(s, next);
    }

    private static bool RegisterOnly(in Instruction ins) =>
        !ins.HasLockPrefix && ins.OpCount == 2 && IsReg(ins, 0) && (IsReg(ins, 1) || IsImm(ins, 1));

    /// <summary>True when <paramref name="next"/> overwrites every arithmetic flag without reading one and cannot fault.</summary>
    private static bool Kills(in Instruction next) =>
        next.Mnemonic is Mnemonic.Add or Mnemonic.Or or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp or Mnemonic.Test
        && RegisterOnly(next);

    /// <summary>Rebinds <paramref name="prevOp"/> when its flags are dead; false (nothing changed) otherwise.</summary>
    public static bool TryDrop(in Instruction prev, Op* prevOp, in Instruction next)
    {
        if (!RegisterOnly(prev) || !Kills(next)) return false;
        int lg = Log(Size(prev, 0));
        bool rr = IsReg(prev, 1);
        delegate*<CpuState*, Op*, Op*> h = prev.Mnemonic switch
        {
            Mnemonic.Add => Pick<PAdd>(rr, lg),
            Mnemonic.Or => Pick<POr>(rr, lg),
            Mnemonic.And => Pick<PAnd>(rr, lg),
            Mnemonic.Sub => Pick<PSub>(rr, lg),
            Mnemonic.Xor => Pick<PXor>(rr, lg),
            _ => null,
        };
        if (h == null) return false;
        prevOp->H = h;
        return true;
    }

    private static delegate*<CpuState*, Op*, Op*> Pick<P>(bool rr, int lg) where P : struct, IPureAlu => rr
        ? lg switch { 0 => &RR<P, S8>, 1 => &RR<P, S16>, 2 => &RR<P, S32>, _ => &RR<P, S64> }
        : lg switch { 0 => &RI<P, S8>, 1 => &RI<P, S16>, 2 => &RI<P, S32>, _ => &RI<P, S64> };
}
