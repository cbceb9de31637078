using System.Runtime.CompilerServices;
using Iced.Intel;
using IReg = Iced.Intel.Register;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu.Ops;

/// <summary>Address size of a string instruction: 64 (RSI/RDI/RCX) or 32 (ESI/EDI/ECX, 0x67 prefix).</summary>
internal interface IAddrSize { static abstract bool Is32 { get; } }
internal struct A64 : IAddrSize { public static bool Is32 => false; }
internal struct A32 : IAddrSize { public static bool Is32 => true; }

/// <summary>
/// movs, stos, lods, cmps, scas, ins, outs with rep / repe / repne, with 64-bit
/// (RSI/RDI/RCX) or 32-bit (ESI/EDI/ECX, 0x67 prefix: each register wraps at 4 GiB and
/// is written zero-extended) addressing. Registers advance per
/// element, so a fault or a stop mid-way leaves a restartable state. Every element
/// counts as an instruction retired. A long rep looks at the vCPU's link and the
/// instruction budget after every 256 elements (or the page that passes 256) and
/// yields, restarting the instruction, when a request is pending or the budget is used.
/// </summary>
internal static unsafe class StringOps
{
    // X: 0 movs, 1 stos, 2 lods, 3 cmps, 4 scas, 5 ins, 6 outs. Y: 0 no rep, 1 rep/repe, 2 repne.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Rsi<A>(CpuState* s) where A : struct, IAddrSize => A.Is32 ? (uint)s->Regs[6] : s->Regs[6];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Rdi<A>(CpuState* s) where A : struct, IAddrSize => A.Is32 ? (uint)s->Regs[7] : s->Regs[7];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Advance<A>(CpuState* s, int reg, long step) where A : struct, IAddrSize =>
        s->Regs[reg] = A.Is32 ? (uint)(s->Regs[reg] + (ulong)step) : s->Regs[reg] + (ulong)step;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Count<A>(CpuState* s) where A : struct, IAddrSize => A.Is32 ? (uint)s->Regs[1] : s->Regs[1];

    private static bool One<T, A>(CpuState* s, Op* op, long step) where T : struct, ISz where A : struct, IAddrSize
    {
        switch (op->X)
        {
            case 0:
            {
                ulong v = Mem.Read<T>(s, Rsi<A>(s) + s->SegBase[op->Seg]);
                Mem.Write<T>(s, Rdi<A>(s), v);
                Advance<A>(s, 6, step);
                Advance<A>(s, 7, step);
                return true;
            }
            case 1:
                Mem.Write<T>(s, Rdi<A>(s), Reg.Get<T>(s, 0));
                Advance<A>(s, 7, step);
                return true;
            case 2:
                Reg.Set<T>(s, 0, Mem.Read<T>(s, Rsi<A>(s) + s->SegBase[op->Seg]));
                Advance<A>(s, 6, step);
                return true;
            case 3:
            {
                ulong a = Mem.Read<T>(s, Rsi<A>(s) + s->SegBase[op->Seg]);
                ulong b = Mem.Read<T>(s, Rdi<A>(s));
                Flags.Set<T>(s, Flags.Sub, a - b, a, b);
                Advance<A>(s, 6, step);
                Advance<A>(s, 7, step);
                return a == b;
            }
            case 4:
            {
                ulong a = Reg.Get<T>(s, 0);
                ulong b = Mem.Read<T>(s, Rdi<A>(s));
                Flags.Set<T>(s, Flags.Sub, a - b, a, b);
                Advance<A>(s, 7, step);
                return a == b;
            }
            case 5:
            {
                // ins: the destination must be writable before the port is read (a port read may have effects).
                RequireIopl(s);
                ulong dst = Rdi<A>(s);
                Vcpu.Of(s).ProbeWrite(dst, T.Bits / 8);
                uint v = Vcpu.Of(s).PortIn((ushort)s->Regs[2], T.Bits / 8);
                Mem.Write<T>(s, dst, v);
                Advance<A>(s, 7, step);
                return true;
            }
            default:
            {
                RequireIopl(s);
                ulong v = Mem.Read<T>(s, Rsi<A>(s) + s->SegBase[op->Seg]);
                Vcpu.Of(s).PortOut((ushort)s->Regs[2], T.Bits / 8, (uint)v);
                Advance<A>(s, 6, step);
                return true;
            }
        }
    }

    private static void RequireIopl(CpuState* s) { if (s->Cpl > (int)((s->Flags >> 12) & 3)) throw GuestFault.Gp(); }

    /// <summary>Elements a rep runs between looks at the link and the instruction budget.</summary>
    internal const int YieldEvery = 256;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Op* Str<T, A>(CpuState* s, Op* op) where T : struct, ISz where A : struct, IAddrSize
    {
        int size = T.Bits / 8;
        long step = (s->Flags & Flags.DF) != 0 ? -size : size;
        if (op->Y == 0)
        {
            One<T, A>(s, op, step);
            return Exec.Next(s, op);
        }
        // Every element counts as an instruction retired (the op itself is counted as one by
        // the block), so a rep cannot run past the budget: it yields, restartable, once the
        // elements done reach the instruction limit. Elements are added to Retired as they are
        // done, so a fault mid-way counts them too.
        long limit = s->InstructionLimit - (s->Retired + (op - Block.OpsOf(s->CurBlock)));
        long done = 0, sinceCheck = 0;
        bool counted = false;   // the op's own count (the block's) stands for its first element
        while (Count<A>(s) != 0)
        {
            long n;
            if (!A.Is32 && step > 0 && op->X <= 1 && s->Regs[1] > 1 && (n = (long)Bulk<T>(s, op)) != 0)
            {
                s->Regs[1] -= (ulong)n;
            }
            else
            {
                bool eq = One<T, A>(s, op, step);
                s->Regs[1] = A.Is32 ? (uint)(s->Regs[1] - 1) : s->Regs[1] - 1;
                n = 1;
                if (op->X >= 3 && (op->Y == 1 ? !eq : eq)) { Count(s, n, ref counted); done += n; break; }
            }
            Count(s, n, ref counted);
            done += n;
            sinceCheck += n;
            if (sinceCheck >= YieldEvery && Count<A>(s) != 0)
            {
                sinceCheck = 0;
                if (done >= limit || Vcpu.Of(s).Link.HasRequests)
                {
                    // Yield: the run loop sees the budget or the requests, then restarts this
                    // instruction with RCX/RSI/RDI as they are, as a CPU does on an interrupt.
                    s->Rip = s->BlockVa + op->RipOff;
                    return null;
                }
            }
        }
        return Exec.Next(s, op);
    }

    /// <summary>Adds <paramref name="n"/> elements to Retired, less the one the block counts for the op.</summary>
    private static void Count(CpuState* s, long n, ref bool counted)
    {
        if (!counted) { n--; counted = true; }
        s->Retired += n;
    }

    /// <summary>Forward rep movs/stos over host pointers within one page each; returns elements done (0: take the slow way).</summary>
    private static ulong Bulk<T>(CpuState* s, Op* op) where T : struct, ISz
    {
        int size = T.Bits / 8;
        ulong rdi = s->Regs[7];
        if ((rdi & (ulong)(size - 1)) != 0) return 0;
        ulong n = Math.Min(s->Regs[1], (4096 - (rdi & 0xFFF)) / (ulong)size);
        if (op->X == 0)
        {
            ulong rsi = s->Regs[6] + s->SegBase[op->Seg];
            if ((rsi & (ulong)(size - 1)) != 0) return 0;
            n = Math.Min(n, (4096 - (rsi & 0xFFF)) / (ulong)size);
            ulong epoch = s->FlushEpoch;
            byte* src = ReadPtr(s, rsi);
            byte* dst = Mem.RmwPtr(s, rdi, size);
            if (dst == null || s->FlushEpoch != epoch) return 0;   // a flush made src stale: go element by element
            ulong bytes = n * (ulong)size;
            if (dst + bytes <= src || dst >= src + bytes) Buffer.MemoryCopy(src, dst, bytes, bytes);
            else for (ulong i = 0; i < bytes; i++) dst[i] = src[i];   // overlapping: element order matters
            s->Regs[6] += bytes;
            s->Regs[7] += bytes;
            return n;
        }
        else
        {
            byte* dst = Mem.RmwPtr(s, rdi, size);
            if (dst == null) return 0;
            ulong v = Reg.Get<T>(s, 0);
            if (T.Bits == 8) new Span<byte>(dst, (int)n).Fill((byte)v);
            else if (T.Bits == 16) new Span<ushort>(dst, (int)n).Fill((ushort)v);
            else if (T.Bits == 32) new Span<uint>(dst, (int)n).Fill((uint)v);
            else new Span<ulong>(dst, (int)n).Fill(v);
            s->Regs[7] += n * (ulong)size;
            return n;
        }
    }

    private static byte* ReadPtr(CpuState* s, ulong va)
    {
        TlbEntry* e = s->TlbRead + ((va >> 12) & Mem.TlbMask);
        if (e->Tag == ((va & Mem.PageMask) | s->TlbCplBit)) return (byte*)(va + (ulong)e->Addend);
        return Vcpu.Of(s).TranslateVa(va, AccessKind.Read, out _);
    }

    internal static bool Bind(in Instruction ins, Op* op, byte kind)
    {
        int bytes = ins.Mnemonic switch
        {
            Mnemonic.Movsb or Mnemonic.Stosb or Mnemonic.Lodsb or Mnemonic.Cmpsb or Mnemonic.Scasb or Mnemonic.Insb or Mnemonic.Outsb => 1,
            Mnemonic.Movsw or Mnemonic.Stosw or Mnemonic.Lodsw or Mnemonic.Cmpsw or Mnemonic.Scasw or Mnemonic.Insw or Mnemonic.Outsw => 2,
            Mnemonic.Movsd or Mnemonic.Stosd or Mnemonic.Lodsd or Mnemonic.Cmpsd or Mnemonic.Scasd or Mnemonic.Insd or Mnemonic.Outsd => 4,
            _ => 8,
        };
        if (ins.Mnemonic == Mnemonic.Movsd && ins.OpCount == 2 && ins.Op0Kind == OpKind.Register) return false; // SSE movsd
        op->X = kind;
        op->Y = (byte)(ins.HasRepPrefix || ins.HasRepePrefix ? 1 : ins.HasRepnePrefix ? 2 : 0);
        if (kind is <= 1 or >= 5 && op->Y == 2) op->Y = 1;   // repne movs/stos/ins/outs behaves as rep
        op->Seg = ins.SegmentPrefix switch { IReg.FS => 1, IReg.GS => 2, _ => 0 };
        bool a32 = false;
        for (int i = 0; i < ins.OpCount; i++)
        {
            var k = ins.GetOpKind(i);
            if (k is OpKind.MemorySegESI or OpKind.MemoryESEDI) a32 = true;
            else if (k is OpKind.MemorySegSI or OpKind.MemoryESDI or OpKind.MemorySegDI) return false;   // 16-bit addressing: not in 64-bit mode
        }
        op->H = (bytes, a32) switch
        {
            (1, false) => &Str<S8, A64>, (2, false) => &Str<S16, A64>, (4, false) => &Str<S32, A64>, (_, false) => &Str<S64, A64>,
            (1, true) => &Str<S8, A32>, (2, true) => &Str<S16, A32>, (4, true) => &Str<S32, A32>, (_, true) => &Str<S64, A32>,
        };
        return true;
    }

    public static void Register()
    {
        foreach (var (m, k) in new (Mnemonic, byte)[]
        {
            (Mnemonic.Movsb, 0), (Mnemonic.Movsw, 0), (Mnemonic.Movsd, 0), (Mnemonic.Movsq, 0),
            (Mnemonic.Stosb, 1), (Mnemonic.Stosw, 1), (Mnemonic.Stosd, 1), (Mnemonic.Stosq, 1),
            (Mnemonic.Lodsb, 2), (Mnemonic.Lodsw, 2), (Mnemonic.Lodsd, 2), (Mnemonic.Lodsq, 2),
            (Mnemonic.Cmpsb, 3), (Mnemonic.Cmpsw, 3), (Mnemonic.Cmpsd, 3), (Mnemonic.Cmpsq, 3),
            (Mnemonic.Scasb, 4), (Mnemonic.Scasw, 4), (Mnemonic.Scasd, 4), (Mnemonic.Scasq, 4),
            (Mnemonic.Insb, 5), (Mnemonic.Insw, 5), (Mnemonic.Insd, 5),
            (Mnemonic.Outsb, 6), (Mnemonic.Outsw, 6), (Mnemonic.Outsd, 6),
        })
        {
            byte kind = k;
            // String I/O leaves the guest for the port, which may ask the run loop to stop.
            Binder.Add(m, (in Instruction i, Op* o) => Bind(i, o, kind), endsBlock: kind >= 5);
        }
    }
}
