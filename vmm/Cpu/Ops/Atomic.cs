using System.Runtime.CompilerServices;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// Locked read-modify-write: a compare-exchange loop on the host pointer, so
/// the operation is atomic against every other vCPU, and against a vCPU's page
/// walk setting accessed/dirty bits with a CAS on the same guest PTE. A write-
/// protected guest page table (shadow MMU) is no exception: the op runs on the
/// backing frame's pointer like any other, and only afterwards does the MMU zap
/// what the write changed (<see cref="Mem.LockedPtr"/>, <see cref="Mem.LockedWriteDone"/>).
/// An access that crosses a page (no single host pointer) takes
/// <see cref="SplitLock"/> instead, like a bus lock; so does cmpxchg16b (no
/// 128-bit interlocked in .NET).
/// </summary>
/// <remarks>
/// Lock order (mmu/LOCKING.md "The vCPU side"): the split lock is outermost. A vCPU
/// that finds it taken leaves guest mode before it blocks (<see cref="EnterSplitLock"/>),
/// so the holder may fault, report a trapped page-table write and wait for a
/// shootdown under it without waiting for a vCPU that waits for the lock. It is
/// never taken under an MMU or host lock.
/// </remarks>
internal static unsafe class Atomic
{
    /// <summary>Global lock for locked accesses that cannot be done with one interlocked operation. Enter with <see cref="EnterSplitLock"/>.</summary>
    public static readonly object SplitLock = new();

    /// <summary>
    /// Take <see cref="SplitLock"/>. When it is taken, wait outside guest mode: the holder
    /// may be waiting for a TLB shootdown (its fault, or its trapped page-table write,
    /// under a host invalidation or the MMU lock) that would otherwise wait for this vCPU.
    /// A flush asked while outside was not waited for: take it before touching guest memory.
    /// </summary>
    public static void EnterSplitLock(CpuState* s)
    {
        if (Monitor.TryEnter(SplitLock)) return;
        var vcpu = Vcpu.Of(s);
        bool inGuest = vcpu.Link.Mode == ToyVmm.Mmu.Secondary.VcpuMode.InGuest;
        if (inGuest) vcpu.Link.ExitGuest();
        Monitor.Enter(SplitLock);
        if (!inGuest) return;
        vcpu.Link.EnterGuest();
        if (vcpu.Link.HasRequests) vcpu.ServiceRequests();
    }

    public static void ExitSplitLock() => Monitor.Exit(SplitLock);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Load<T>(byte* p) where T : struct, ISz
    {
        if (T.Bits == 8) return Volatile.Read(ref *p);
        if (T.Bits == 16) return Volatile.Read(ref *(ushort*)p);
        if (T.Bits == 32) return Volatile.Read(ref *(uint*)p);
        return Volatile.Read(ref *(ulong*)p);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong LoadPlain<T>(byte* p) where T : struct, ISz
    {
        if (T.Bits == 8) return *p;
        if (T.Bits == 16) return *(ushort*)p;
        if (T.Bits == 32) return *(uint*)p;
        return *(ulong*)p;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StorePlain<T>(byte* p, ulong v) where T : struct, ISz
    {
        if (T.Bits == 8) *p = (byte)v;
        else if (T.Bits == 16) *(ushort*)p = (ushort)v;
        else if (T.Bits == 32) *(uint*)p = (uint)v;
        else *(ulong*)p = v;
    }

    /// <summary>Compare-exchange; returns the value found.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Cas<T>(byte* p, ulong value, ulong expected) where T : struct, ISz
    {
        if (T.Bits == 8) return Interlocked.CompareExchange(ref *p, (byte)value, (byte)expected);
        if (T.Bits == 16) return Interlocked.CompareExchange(ref *(ushort*)p, (ushort)value, (ushort)expected);
        if (T.Bits == 32) return Interlocked.CompareExchange(ref *(uint*)p, (uint)value, (uint)expected);
        return Interlocked.CompareExchange(ref *(ulong*)p, value, expected);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Swap<T>(byte* p, ulong value) where T : struct, ISz
    {
        if (T.Bits == 8) return Interlocked.Exchange(ref *p, (byte)value);
        if (T.Bits == 16) return Interlocked.Exchange(ref *(ushort*)p, (ushort)value);
        if (T.Bits == 32) return Interlocked.Exchange(ref *(uint*)p, (uint)value);
        return Interlocked.Exchange(ref *(ulong*)p, value);
    }

    /// <summary>Atomically applies <typeparamref name="O"/> to memory; returns the old value.</summary>
    public static ulong Rmw<O, T>(CpuState* s, ulong ea, ulong x) where O : struct, IAluOp where T : struct, ISz
    {
        byte* p = Mem.LockedPtr(s, ea, T.Bits / 8, out bool trapped);
        if (p == null)
        {
            EnterSplitLock(s);
            try
            {
                ulong d0 = Mem.Read<T>(s, ea);
                Mem.Write<T>(s, ea, O.Do<T>(s, d0, x));
                return d0;
            }
            finally { ExitSplitLock(); }
        }
        while (true)
        {
            ulong d = Load<T>(p);
            // Flags are recorded by each attempt; the successful one's stay.
            ulong r = O.Do<T>(s, d, x);
            if (Cas<T>(p, r, d) != (d & T.Mask)) continue;
            if (trapped) Mem.LockedWriteDone(s, ea, T.Bits / 8);
            return d;
        }
    }

    // xchg r/m, r: with a memory operand always atomic.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* XchgRR<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong a = Reg.Get<T>(s, op->R), b = Reg.Get<T>(s, op->R2);
        Reg.Set<T>(s, op->R, b);
        Reg.Set<T>(s, op->R2, a);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* XchgM<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong ea = Mem.Ea(s, op);
        ulong v = Reg.Get<T>(s, op->R);
        byte* p = Mem.LockedPtr(s, ea, T.Bits / 8, out bool trapped);
        ulong old;
        if (p == null)
        {
            EnterSplitLock(s);
            try { old = Mem.Read<T>(s, ea); Mem.Write<T>(s, ea, v); }
            finally { ExitSplitLock(); }
        }
        else
        {
            old = Swap<T>(p, v);
            if (trapped) Mem.LockedWriteDone(s, ea, T.Bits / 8);
        }
        Reg.Set<T>(s, op->R, old);
        return Exec.Next(s, op);
    }

    // cmpxchg r/m, r: compares the accumulator with the destination.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CmpxchgR<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong acc = Reg.Get<T>(s, 0), d = Reg.Get<T>(s, op->R2);
        Flags.Set<T>(s, Flags.Sub, acc - d, acc, d);
        if (acc == d) Reg.Set<T>(s, op->R2, Reg.Get<T>(s, op->R));
        else Reg.Set<T>(s, 0, d);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CmpxchgM<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong ea = Mem.Ea(s, op);
        ulong acc = Reg.Get<T>(s, 0), src = Reg.Get<T>(s, op->R);
        byte* p = Mem.LockedPtr(s, ea, T.Bits / 8, out bool trapped);
        ulong d;
        if (p == null)
        {
            EnterSplitLock(s);
            try
            {
                d = Mem.Read<T>(s, ea);
                Mem.Write<T>(s, ea, d == acc ? src : d);
            }
            finally { ExitSplitLock(); }
        }
        else
        {
            d = Cas<T>(p, src, acc);
            // A failed compare writes nothing here (the processor writes the old value
            // back): only a success can have changed what the shadow pages derive from.
            if (trapped) Mem.LockedWriteDone(s, ea, T.Bits / 8, wrote: d == acc);
        }
        Flags.Set<T>(s, Flags.Sub, acc - d, acc, d);
        if (d != acc) Reg.Set<T>(s, 0, d);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* XaddR<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong d = Reg.Get<T>(s, op->R2), x = Reg.Get<T>(s, op->R);
        ulong r = AddOp.Do<T>(s, d, x);
        Reg.Set<T>(s, op->R, d);
        Reg.Set<T>(s, op->R2, r);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* XaddM<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        ulong old = Rmw<AddOp, T>(s, Mem.Ea(s, op), Reg.Get<T>(s, op->R));
        Reg.Set<T>(s, op->R, old);
        return Exec.Next(s, op);
    }

    // cmpxchg8b (64-bit compare of EDX:EAX) and cmpxchg16b (RDX:RAX, 16-byte aligned).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cmpxchg8b(CpuState* s, Op* op)
    {
        ulong ea = Mem.Ea(s, op);
        ulong acc = (uint)s->Regs[0] | (s->Regs[2] << 32);
        ulong src = (uint)s->Regs[3] | (s->Regs[1] << 32);
        byte* p = Mem.LockedPtr(s, ea, 8, out bool trapped);
        ulong d;
        if (p == null)
        {
            EnterSplitLock(s);
            try { d = Mem.Read<S64>(s, ea); Mem.Write<S64>(s, ea, d == acc ? src : d); }
            finally { ExitSplitLock(); }
        }
        else
        {
            d = Interlocked.CompareExchange(ref *(ulong*)p, src, acc);
            if (trapped) Mem.LockedWriteDone(s, ea, 8, wrote: d == acc);
        }
        bool eq = d == acc;
        Flags.Merge(s, eq ? Flags.ZF : 0, Flags.ZF);
        if (!eq) { s->Regs[0] = (uint)d; s->Regs[2] = d >> 32; }
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Cmpxchg16b(CpuState* s, Op* op)
    {
        ulong ea = Mem.Ea(s, op);
        if ((ea & 15) != 0) throw GuestFault.Gp();
        bool eq;
        ulong lo, hi;
        // Atomic against other split-lock users only: a page walk's accessed/dirty CAS on
        // one of the two quadwords can be lost (no 128-bit interlocked to do better).
        EnterSplitLock(s);
        try
        {
            Vcpu.Of(s).ProbeWrite(ea, 16);
            lo = Mem.Read<S64>(s, ea);
            hi = Mem.Read<S64>(s, ea + 8);
            eq = lo == s->Regs[0] && hi == s->Regs[2];
            if (eq) { Mem.Write<S64>(s, ea, s->Regs[3]); Mem.Write<S64>(s, ea + 8, s->Regs[1]); }
            else { Mem.Write<S64>(s, ea, lo); Mem.Write<S64>(s, ea + 8, hi); }
        }
        finally { ExitSplitLock(); }
        Flags.Merge(s, eq ? Flags.ZF : 0, Flags.ZF);
        if (!eq) { s->Regs[0] = lo; s->Regs[2] = hi; }
        return Exec.Next(s, op);
    }

    private static bool BindXchg(in Instruction ins, Op* op)
    {
        int lg = Log(Size(ins, 0));
        if (IsReg(ins, 0) && IsReg(ins, 1))
        {
            op->R = Gpr(ins.Op0Register);
            op->R2 = Gpr(ins.Op1Register);
            op->H = lg switch { 0 => &XchgRR<S8>, 1 => &XchgRR<S16>, 2 => &XchgRR<S32>, _ => &XchgRR<S64> };
            return true;
        }
        int mi = IsMem(ins, 0) ? 0 : 1;
        Operands.Mem(ins, op);
        op->R = Gpr(ins.GetOpRegister(1 - mi));
        op->H = lg switch { 0 => &XchgM<S8>, 1 => &XchgM<S16>, 2 => &XchgM<S32>, _ => &XchgM<S64> };
        return true;
    }

    private static bool BindCmpxchg(in Instruction ins, Op* op)
    {
        int lg = Log(Size(ins, 0));
        op->R = Gpr(ins.Op1Register);
        if (IsReg(ins, 0))
        {
            op->R2 = Gpr(ins.Op0Register);
            op->H = lg switch { 0 => &CmpxchgR<S8>, 1 => &CmpxchgR<S16>, 2 => &CmpxchgR<S32>, _ => &CmpxchgR<S64> };
            return true;
        }
        Operands.Mem(ins, op);
        op->H = lg switch { 0 => &CmpxchgM<S8>, 1 => &CmpxchgM<S16>, 2 => &CmpxchgM<S32>, _ => &CmpxchgM<S64> };
        return true;
    }

    private static bool BindXadd(in Instruction ins, Op* op)
    {
        int lg = Log(Size(ins, 0));
        op->R = Gpr(ins.Op1Register);
        if (IsReg(ins, 0))
        {
            op->R2 = Gpr(ins.Op0Register);
            op->H = lg switch { 0 => &XaddR<S8>, 1 => &XaddR<S16>, 2 => &XaddR<S32>, _ => &XaddR<S64> };
            return true;
        }
        Operands.Mem(ins, op);
        op->H = lg switch { 0 => &XaddM<S8>, 1 => &XaddM<S16>, 2 => &XaddM<S32>, _ => &XaddM<S64> };
        return true;
    }

    public static void Register()
    {
        Binder.Add(Mnemonic.Xchg, BindXchg);
        Binder.Add(Mnemonic.Cmpxchg, BindCmpxchg);
        Binder.Add(Mnemonic.Xadd, BindXadd);
        Binder.Add(Mnemonic.Cmpxchg8b, (in Instruction ins, Op* op) => { Operands.Mem(ins, op); op->H = &Cmpxchg8b; return true; });
        Binder.Add(Mnemonic.Cmpxchg16b, (in Instruction ins, Op* op) => { Operands.Mem(ins, op); op->H = &Cmpxchg16b; return true; });
    }
}
