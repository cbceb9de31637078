using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

internal unsafe struct IncOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz
    {
        ulong c = Flags.Carry(s) ? 1UL : 0;
        ulong r = d + 1;
        Flags.Set<T>(s, Flags.Inc, r, d, 1);
        s->LAux = c;
        return r;
    }
}
internal unsafe struct DecOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz
    {
        ulong c = Flags.Carry(s) ? 1UL : 0;
        ulong r = d - 1;
        Flags.Set<T>(s, Flags.Dec, r, d, 1);
        s->LAux = c;
        return r;
    }
}
internal unsafe struct NegOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz { ulong r = 0 - d; Flags.Set<T>(s, Flags.Sub, r, 0, d); return r; }
}
internal unsafe struct NotOp : IAluOp
{
    public static bool Writes => true;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Do<T>(CpuState* s, ulong d, ulong x) where T : struct, ISz => ~d;
}

/// <summary>inc, dec, neg, not (register and memory; lock forms atomic).</summary>
internal static unsafe class Unary
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* R<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        Reg.Set<T>(s, op->R, O.Do<T>(s, Reg.Get<T>(s, op->R), 0));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* M<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        ulong ea = Mem.Ea(s, op);
        Mem.Write<T>(s, ea, O.Do<T>(s, Mem.Read<T>(s, ea), 0));
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* LockM<O, T>(CpuState* s, Op* op) where O : struct, IAluOp where T : struct, ISz
    {
        Atomic.Rmw<O, T>(s, Mem.Ea(s, op), 0);
        return Exec.Next(s, op);
    }

    private static bool Bind<O>(in Instruction ins, Op* op) where O : struct, IAluOp
    {
        int lg = Log(Size(ins, 0));
        if (IsReg(ins, 0))
        {
            op->R = Gpr(ins.Op0Register);
            op->H = lg switch { 0 => &R<O, S8>, 1 => &R<O, S16>, 2 => &R<O, S32>, _ => &R<O, S64> };
            return true;
        }
        Operands.Mem(ins, op);
        op->H = ins.HasLockPrefix
            ? lg switch { 0 => &LockM<O, S8>, 1 => &LockM<O, S16>, 2 => &LockM<O, S32>, _ => &LockM<O, S64> }
            : lg switch { 0 => &M<O, S8>, 1 => &M<O, S16>, 2 => &M<O, S32>, _ => &M<O, S64> };
        return true;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Inc, Bind<IncOp>);
        Binder.Add(Mnemonic.Dec, Bind<DecOp>);
        Binder.Add(Mnemonic.Neg, Bind<NegOp>);
        Binder.Add(Mnemonic.Not, Bind<NotOp>);
    }
}
