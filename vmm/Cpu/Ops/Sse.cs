using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Iced.Intel;
using static ToyVmm.Cpu.Operands;
using V = System.Runtime.Intrinsics.Vector128<byte>;
using X86Sse = System.Runtime.Intrinsics.X86.Sse;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// SSE/SSE2 as gcc emits it, ldmxcsr/stmxcsr, fxsave/fxrstor. Op fields: R = destination
/// xmm (or GPR), R2 = source xmm (or GPR); Y = 1 when the source or destination is memory;
/// X = memory width (0 m128 aligned, 1 m128 unaligned, 2 m64, 3 m32, 4 m16).
/// Every handler first checks CR0.EM/TS and CR4.OSFXSR (#UD / #NM).
/// </summary>
internal static unsafe partial class Sse
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V Ld(CpuState* s, int i) => Vector128.Load((byte*)&s->Xmm[i * 2]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void St(CpuState* s, int i, V v) => v.Store((byte*)&s->Xmm[i * 2]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Check(CpuState* s) { if (s->SseFault != 0) Raise(s); }

    private static void Raise(CpuState* s) => throw new GuestFault(s->SseFault);

    // The memory side of every SSE handler, too large to inline: optimised from its first call
    // like the handlers themselves (vmm/Cpu/README.md, "Compiled once, optimised").
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static V Load(CpuState* s, ulong ea, int width)
    {
        switch (width)
        {
            case 0:
                if ((ea & 15) != 0) throw GuestFault.Gp();
                goto case 1;
            case 1:
            {
                var v = Mem.Read128(s, ea);
                return Vector128.Create((ulong)v, (ulong)(v >> 64)).AsByte();
            }
            case 2: return Vector128.CreateScalar(Mem.Read<S64>(s, ea)).AsByte();
            case 3: return Vector128.CreateScalar((uint)Mem.Read<S32>(s, ea)).AsByte();
            default: return Vector128.CreateScalar((ushort)Mem.Read<S16>(s, ea)).AsByte();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Store(CpuState* s, ulong ea, int width, V v)
    {
        var q = v.AsUInt64();
        switch (width)
        {
            case 0:
                if ((ea & 15) != 0) throw GuestFault.Gp();
                goto case 1;
            case 1: Mem.Write128(s, ea, new UInt128(q.GetElement(1), q.GetElement(0))); break;
            case 2: Mem.Write<S64>(s, ea, q.GetElement(0)); break;
            case 3: Mem.Write<S32>(s, ea, q.GetElement(0)); break;
            default: Mem.Write<S16>(s, ea, q.GetElement(0)); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static V Src(CpuState* s, Op* op) => op->Y == 0 ? Ld(s, op->R2) : Load(s, Mem.Ea(s, op), op->X);

    /// <summary>dst = O(dst, src, imm).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* V2<O>(CpuState* s, Op* op) where O : struct, IV2
    {
        Check(s);
        V b = Src(s, op);
        St(s, op->R, O.Do(Ld(s, op->R), b, op->Imm));
        return Exec.Next(s, op);
    }

    /// <summary>Loads from memory zero-extending the scalar (movss/movsd/movq/movd loads); register forms use V2 merges.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* LoadZx(CpuState* s, Op* op)
    {
        Check(s);
        St(s, op->R, Load(s, Mem.Ea(s, op), op->X));
        return Exec.Next(s, op);
    }

    /// <summary>Stores xmm R (width X) to memory.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* StoreM(CpuState* s, Op* op)
    {
        Check(s);
        Store(s, Mem.Ea(s, op), op->X, Ld(s, op->R));
        return Exec.Next(s, op);
    }

    /// <summary>movhps/movhpd store: the high qword.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* StoreHigh(CpuState* s, Op* op)
    {
        Check(s);
        Mem.Write<S64>(s, Mem.Ea(s, op), Ld(s, op->R).AsUInt64().GetElement(1));
        return Exec.Next(s, op);
    }

    /// <summary>movhps/movhpd load: the high qword from memory.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* LoadHigh(CpuState* s, Op* op)
    {
        Check(s);
        ulong v = Mem.Read<S64>(s, Mem.Ea(s, op));
        St(s, op->R, Ld(s, op->R).AsUInt64().WithElement(1, v).AsByte());
        return Exec.Next(s, op);
    }

    /// <summary>movlps/movlpd load: the low qword from memory, high kept.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* LoadLow(CpuState* s, Op* op)
    {
        Check(s);
        ulong v = Mem.Read<S64>(s, Mem.Ea(s, op));
        St(s, op->R, Ld(s, op->R).AsUInt64().WithElement(0, v).AsByte());
        return Exec.Next(s, op);
    }

    // movd/movq between a GPR (R2) and xmm (R): X = 3 dword, 2 qword.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* GprToXmm(CpuState* s, Op* op)
    {
        Check(s);
        ulong v = op->X == 3 ? (uint)s->Regs[op->R2] : s->Regs[op->R2];
        St(s, op->R, Vector128.CreateScalar(v).AsByte());
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* XmmToGpr(CpuState* s, Op* op)
    {
        Check(s);
        ulong v = Ld(s, op->R).AsUInt64().ToScalar();
        s->Regs[op->R2] = op->X == 3 ? (uint)v : v;
        return Exec.Next(s, op);
    }

    // X: 0 pmovmskb, 1 movmskps, 2 movmskpd. R2 = GPR destination, R = xmm.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* MoveMask(CpuState* s, Op* op)
    {
        Check(s);
        V v = Ld(s, op->R);
        s->Regs[op->R2] = op->X switch
        {
            0 => (uint)Sse2.MoveMask(v),
            1 => (uint)X86Sse.MoveMask(v.AsSingle()),
            _ => (uint)Sse2.MoveMask(v.AsDouble()),
        };
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Pextrw(CpuState* s, Op* op)
    {
        Check(s);
        s->Regs[op->R2] = Ld(s, op->R).AsUInt16().GetElement(op->Imm & 7);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Pinsrw(CpuState* s, Op* op)
    {
        Check(s);
        ushort v = op->Y == 0 ? (ushort)s->Regs[op->R2] : (ushort)Mem.Read<S16>(s, Mem.Ea(s, op));
        St(s, op->R, Ld(s, op->R).AsUInt16().WithElement(op->Imm & 7, v).AsByte());
        return Exec.Next(s, op);
    }

    // ucomisd/comisd (X = 0) and ucomiss/comiss (X = 1): ZF PF CF; OF SF AF cleared. Imm = host thunk.
    // Fast path: default MXCSR control and no NaN or denormal operand (nothing can be raised).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Ucomi(CpuState* s, Op* op)
    {
        Check(s);
        V a = Ld(s, op->R);
        V b = op->Y == 0 ? Ld(s, op->R2) : Load(s, Mem.Ea(s, op), op->X == 0 ? 2 : 3);
        bool ordinary = op->X == 0 ? Lane.OrdD(Lane.D(a, 0)) & Lane.OrdD(Lane.D(b, 0)) : Lane.OrdS(Lane.S(a, 0)) & Lane.OrdS(Lane.S(b, 0));
        ulong f;
        if (ordinary && (s->Mxcsr & ControlBits) == Default)
        {
            double x, y;
            if (op->X == 0) { x = a.AsDouble().ToScalar(); y = b.AsDouble().ToScalar(); }
            else { x = a.AsSingle().ToScalar(); y = b.AsSingle().ToScalar(); }
            f = x < y ? Flags.CF : x == y ? Flags.ZF : 0;
        }
        else f = UcomiSlow(s, op, a, b);
        Flags.Merge(s, f, Flags.Arith);
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong UcomiSlow(CpuState* s, Op* op, V a, V b)
    {
        ulong* io = stackalloc ulong[8];
        a.Store((byte*)io);
        b.Store((byte*)(io + 2));
        OnHost(s, op->Imm, io);
        return io[6] & (Flags.ZF | Flags.PF | Flags.CF);
    }

    // cvtsi2sd / cvtsi2ss: R = xmm, source GPR R2 or memory; X = 3 (32-bit) or 2 (64-bit); Imm bit 0 = single,
    // thunk from bit 8. Exact (no flag, no rounding) when the integer fits the significand.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CvtSi2F(CpuState* s, Op* op)
    {
        Check(s);
        long v = op->Y == 0
            ? (op->X == 3 ? (int)s->Regs[op->R2] : (long)s->Regs[op->R2])
            : (op->X == 3 ? (int)Mem.Read<S32>(s, Mem.Ea(s, op)) : (long)Mem.Read<S64>(s, Mem.Ea(s, op)));
        V a = Ld(s, op->R);
        bool single = (op->Imm & 1) != 0;
        long limit = single ? 1L << 24 : 1L << 53;
        if ((v >= -limit && v <= limit) || (s->Mxcsr & (ControlBits | Pe)) == (Default | Pe))
        {
            V r = single
                ? X86Sse.X64.ConvertScalarToVector128Single(a.AsSingle(), v).AsByte()
                : Sse2.X64.ConvertScalarToVector128Double(a.AsDouble(), v).AsByte();
            St(s, op->R, r);
            return Exec.Next(s, op);
        }
        return CvtSi2FSlow(s, op, a, v);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* CvtSi2FSlow(CpuState* s, Op* op, V a, long v)
    {
        ulong* io = stackalloc ulong[8];
        a.Store((byte*)io);
        io[5] = (ulong)v;
        OnHost(s, op->Imm >> 8, io);
        St(s, op->R, Vector128.Load((byte*)io));
        return Exec.Next(s, op);
    }

    // cvt(t)sd2si / cvt(t)ss2si: R2 = GPR destination, R = xmm source (or memory);
    // X = source width (2 sd, 3 ss); Imm bit 0: truncate; bit 1: 64-bit destination; thunk from bit 8.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* CvtF2Si(CpuState* s, Op* op)
    {
        Check(s);
        V src = op->Y == 0 ? Ld(s, op->R) : Load(s, Mem.Ea(s, op), op->X);
        bool trunc = (op->Imm & 1) != 0, wide = (op->Imm & 2) != 0;
        if ((s->Mxcsr & (ControlBits | Pe)) == (Default | Pe))
        {
            ulong r;
            if (op->X == 2)
            {
                var d = src.AsDouble();
                r = wide ? (ulong)(trunc ? Sse2.X64.ConvertToInt64WithTruncation(d) : Sse2.X64.ConvertToInt64(d))
                         : (uint)(trunc ? Sse2.ConvertToInt32WithTruncation(d) : Sse2.ConvertToInt32(d));
            }
            else
            {
                var f = src.AsSingle();
                r = wide ? (ulong)(trunc ? X86Sse.X64.ConvertToInt64WithTruncation(f) : X86Sse.X64.ConvertToInt64(f))
                         : (uint)(trunc ? X86Sse.ConvertToInt32WithTruncation(f) : X86Sse.ConvertToInt32(f));
            }
            if (r != (wide ? 0x8000_0000_0000_0000UL : 0x8000_0000UL))   // the integer indefinite may mean IE
            {
                s->Regs[op->R2] = r;
                return Exec.Next(s, op);
            }
        }
        return CvtF2SiSlow(s, op, src);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* CvtF2SiSlow(CpuState* s, Op* op, V src)
    {
        ulong* io = stackalloc ulong[8];
        src.Store((byte*)(io + 2));
        OnHost(s, op->Imm >> 8, io);
        s->Regs[op->R2] = io[5];
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Ldmxcsr(CpuState* s, Op* op)
    {
        Check(s);
        uint v = (uint)Mem.Read<S32>(s, Mem.Ea(s, op));
        if ((v & ~0xFFFFu) != 0) throw GuestFault.Gp();
        s->Mxcsr = v;
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Stmxcsr(CpuState* s, Op* op)
    {
        Check(s);
        Mem.Write<S32>(s, Mem.Ea(s, op), s->Mxcsr);
        return Exec.Next(s, op);
    }

    // fxsave / fxrstor (64-bit layout): x87 control/status/tag, the x87/MMX registers in stack order, MXCSR, XMM0-15.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Fxsave(CpuState* s, Op* op)
    {
        if ((s->Cr0 & (Vcpu.Cr0Em | Vcpu.Cr0Ts)) != 0) throw new GuestFault((s->Cr0 & Vcpu.Cr0Em) != 0 ? Vec.UD : Vec.NM);
        ulong ea = Mem.Ea(s, op);
        if ((ea & 15) != 0) throw GuestFault.Gp();
        Vcpu.Of(s).ProbeWrite(ea, 512);
        Mem.Write<S16>(s, ea, s->Fcw);
        Mem.Write<S16>(s, ea + 2, s->Fsw);
        Mem.Write<S8>(s, ea + 4, s->Ftw);
        Mem.Write<S8>(s, ea + 5, 0);
        Mem.Write<S16>(s, ea + 6, 0);
        Mem.Write<S64>(s, ea + 8, 0);
        Mem.Write<S64>(s, ea + 16, 0);
        Mem.Write<S32>(s, ea + 24, s->Mxcsr);
        Mem.Write<S32>(s, ea + 28, 0xFFFF);
        int top = (s->Fsw >> 11) & 7;
        for (int i = 0; i < 8; i++)
        {
            // ST(i), 80 bits (the MMX registers when TOP is 0), then six reserved bytes the host writes as zero.
            int r = (top + i) & 7;
            Mem.Write<S64>(s, ea + 32 + (ulong)i * 16, s->Fpr[r * 2]);
            Mem.Write<S16>(s, ea + 40 + (ulong)i * 16, s->Fpr[r * 2 + 1]);
            Mem.Write<S16>(s, ea + 42 + (ulong)i * 16, 0);
            Mem.Write<S32>(s, ea + 44 + (ulong)i * 16, 0);
        }
        for (int i = 0; i < 16; i++)
        {
            Mem.Write<S64>(s, ea + 160 + (ulong)i * 16, s->Xmm[i * 2]);
            Mem.Write<S64>(s, ea + 168 + (ulong)i * 16, s->Xmm[i * 2 + 1]);
        }
        return Exec.Next(s, op);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Fxrstor(CpuState* s, Op* op)
    {
        if ((s->Cr0 & (Vcpu.Cr0Em | Vcpu.Cr0Ts)) != 0) throw new GuestFault((s->Cr0 & Vcpu.Cr0Em) != 0 ? Vec.UD : Vec.NM);
        ulong ea = Mem.Ea(s, op);
        if ((ea & 15) != 0) throw GuestFault.Gp();
        uint mxcsr = (uint)Mem.Read<S32>(s, ea + 24);
        if ((mxcsr & ~0xFFFFu) != 0) throw GuestFault.Gp();
        Mem.Read<S64>(s, ea + 504);   // the whole area must be readable before anything changes
        var x = stackalloc ulong[32];
        for (int i = 0; i < 32; i++) x[i] = Mem.Read<S64>(s, ea + 160 + (ulong)i * 8);
        var st = stackalloc ulong[16];
        for (int i = 0; i < 8; i++)
        {
            st[i * 2] = Mem.Read<S64>(s, ea + 32 + (ulong)i * 16);
            st[i * 2 + 1] = (ushort)Mem.Read<S16>(s, ea + 40 + (ulong)i * 16);
        }
        s->Fcw = (ushort)Mem.Read<S16>(s, ea);
        // ES (bit 7) and B (bit 15) are not loaded but derived: set when an exception flag is set
        // whose mask is clear (what the host's fxrstor does; MMX's #MF check reads the same).
        ushort fsw = (ushort)Mem.Read<S16>(s, ea + 2);
        bool pending = (fsw & ~s->Fcw & 0x3F) != 0;
        s->Fsw = (ushort)((fsw & 0x7F7F) | (pending ? 0x8080 : 0));
        s->Ftw = (byte)Mem.Read<S8>(s, ea + 4);
        int top = (s->Fsw >> 11) & 7;
        for (int i = 0; i < 8; i++)
        {
            int r = (top + i) & 7;
            s->Fpr[r * 2] = st[i * 2];
            s->Fpr[r * 2 + 1] = st[i * 2 + 1];
        }
        s->Mxcsr = mxcsr;
        for (int i = 0; i < 32; i++) s->Xmm[i] = x[i];
        return Exec.Next(s, op);
    }
}
