using Iced.Intel;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Cpu;

// Decoding guest code into blocks, once per (guest-physical, guest-virtual) start.
// Fetch permission (present, U/S, NX) is checked by the walk when a RIP is first
// looked up under the current translation; the per-vCPU jump cache that remembers
// the answer is flushed with the TLB.
public sealed unsafe partial class Vcpu
{
    internal const int MaxOpsPerBlock = 64;
    /// <summary>
    /// cmp/test + jcc fusion at decode time (Ops/Fused.cs). Off only to compare against the
    /// unfused ops (tests; TOYVMM_NO_FUSE=1 for measurements). Blocks are shared by the
    /// vCPUs of a VM: a block decoded by another vCPU keeps that vCPU's choice.
    /// </summary>
    internal bool FuseCompareBranch { get; set; } = Environment.GetEnvironmentVariable("TOYVMM_NO_FUSE") != "1";
    /// <summary>Dead-flag elision at decode time (Ops/DeadFlags.cs); TOYVMM_KEEP_FLAGS=1 turns it off for measurements.</summary>
    internal bool DropDeadFlags { get; set; } = Environment.GetEnvironmentVariable("TOYVMM_KEEP_FLAGS") != "1";
    private readonly Op[] _opBuf = new Op[MaxOpsPerBlock + 1];
    private readonly byte[] _fetchBuf = new byte[4096 + 16];
    private readonly QuietOps _quietOps = new();
    private ulong _quiet0, _quiet1;   // DecodeInto's answer: bit i = op i touches no guest memory

    private Block* LookupOrDecode(ulong va)
    {
        byte* host = TranslateVa(va, AccessKind.Fetch, out ulong gpa);
        Block* b = _code.Lookup(gpa, va);
        if (b != null && b->Gpa2 != ulong.MaxValue)
        {
            // The block's last instruction crosses into the next page: that mapping must match too.
            TranslateVa((va & Mem.PageMask) + 4096, AccessKind.Fetch, out ulong gpa2);
            if ((gpa2 & Mem.PageMask) != b->Gpa2)
            {
                _code.InvalidatePage(gpa >> 12);
                b = null;
            }
        }
        return b != null ? b : Decode(va);
    }

    private Block* Decode(ulong va)
    {
        while (true)
        {
            // Translate afresh on every attempt: a flush taken meanwhile makes older host pointers stale.
            byte* host = TranslateVa(va, AccessKind.Fetch, out ulong gpa);
            int gen1 = _code.BeginDecode(gpa >> 12), gen2 = 0;
            ulong gpa2 = ulong.MaxValue;
            int avail = 4096 - (int)(va & 0xFFF);
            new ReadOnlySpan<byte>(host, avail).CopyTo(_fetchBuf);
            int n = DecodeInto(va, avail, crossed: false);
            if (n < 0)
            {
                // The first instruction crosses the page end: fetch the next page too (may #PF).
                ulong next = (va & Mem.PageMask) + 4096;
                byte* host2 = TranslateVa(next, AccessKind.Fetch, out ulong g2);
                gpa2 = g2 & Mem.PageMask;
                gen2 = _code.BeginDecode(gpa2 >> 12);
                new ReadOnlySpan<byte>(host2, 15).CopyTo(_fetchBuf.AsSpan(avail));
                n = DecodeInto(va, avail + 15, crossed: true);
            }
            Block* b = _code.Publish(_s, va, gpa & Mem.PageMask | (va & 0xFFF), gpa2, gen1, gen2, _opBuf.AsSpan(0, n), _quiet0, _quiet1);
            if (b != null) return b;
        }
    }

    /// <summary>
    /// Decodes from <c>_fetchBuf[0..avail)</c> into <c>_opBuf</c>; returns the op count including the
    /// terminating op, or -1 when the very first instruction needs bytes past the page.
    /// </summary>
    private int DecodeInto(ulong va, int avail, bool crossed)
    {
        // ForceReservedNop: 0F 0D and 0F 18-0F 1F decode as the hint NOPs they are on a CPU that
        // reports none of what lives there (MPX, CET, CLDEMOTE): gcc's __builtin_prefetch lands here.
        var decoder = Decoder.Create(64, new ByteArrayCodeReader(_fetchBuf, 0, avail), va, DecoderOptions.ForceReservedNop);
        int n = 0;
        int off = 0;
        _quiet0 = _quiet1 = 0;
        Instruction prev = default;
        while (n < MaxOpsPerBlock)
        {
            decoder.Decode(out Instruction ins);
            fixed (Op* op = &_opBuf[n])
            {
                *op = default;
                if (ins.IsInvalid && decoder.LastError == DecoderError.NoMoreBytes && !crossed)
                {
                    if (n == 0) return -1;
                    break;   // the next block starts with the crossing instruction
                }
                op->RipOff = (ushort)off;
                op->Len = (byte)Math.Max(1, ins.Length);
                // 0x67 or an FS/GS override with an explicit memory operand: a prefix op computes
                // the address (Ops/AddressSize.cs), so the instruction takes two ops; a full block ends first.
                bool wrap32 = !ins.IsInvalid && Ops.AddressSize.NeedsPrefixOp(ins)
                    && Ops.AddressSize.HasPrefix(_fetchBuf.AsSpan(off, Math.Min(15, ins.Length)));
                bool split = wrap32 || (!ins.IsInvalid && Ops.AddressSize.HasSegmentBase(ins));
                if (split && n + 1 >= MaxOpsPerBlock) { *op = default; break; }   // n > 0 here: the first always fits
                if (split) *(op + 1) = *op;
                bool ok = !ins.IsInvalid && Binder.Bind(ins, split ? op + 1 : op);
                if (ok && split)
                {
                    Ops.AddressSize.Split(op, op + 1, wrap32);
                    if (_quietOps.IsQuiet(ins)) MarkQuiet(n + 1);
                    MarkQuiet(n);
                    prev = ins;
                    n += 2;
                    off += ins.Length;
                    if (Binder.EndsBlock(ins.Mnemonic) || crossed || off >= avail) break;
                    continue;
                }
                if (!ok)
                {
                    long code = op->Imm;
                    *op = default;
                    op->RipOff = (ushort)off;
                    op->Len = (byte)Math.Max(1, ins.Length);
                    int nb = Math.Min(8, Math.Min(op->Len, avail - off));
                    long bytes = 0;
                    for (int i = 0; i < nb; i++) bytes |= (long)_fetchBuf[off + i] << (8 * i);
                    op->Disp = bytes;
                    op->X = (byte)nb;
                    op->Imm = ins.IsInvalid ? 0 : (int)ins.Code;
                    op->H = &Ops.Control.Ud;
                    n++;
                    off += op->Len;
                    break;
                }
                if (_quietOps.IsQuiet(ins)) MarkQuiet(n);
                // cmp/test + jcc: the previous op runs both (Ops/Fused.cs); its quiet bit stays its own.
                if (n > 0 && FuseCompareBranch) Ops.Fused.TryFuse(prev, op - 1, ins);
                // A register-only ALU op whose flags the next instruction overwrites unread (Ops/DeadFlags.cs).
                if (n > 0 && DropDeadFlags) Ops.DeadFlags.TryDrop(prev, op - 1, ins);
                prev = ins;
                n++;
                off += ins.Length;
                if (Binder.EndsBlock(ins.Mnemonic) || crossed || off >= avail) break;
            }
        }
        fixed (Op* end = &_opBuf[n])
        {
            *end = default;
            end->RipOff = (ushort)off;
            end->H = &Ops.Control.BailOut;
        }
        MarkQuiet(n);
        return n + 1;
    }

    private void MarkQuiet(int op)
    {
        if (op < 64) _quiet0 |= 1UL << op;
        else if (op < 128) _quiet1 |= 1UL << (op - 64);
    }
}
