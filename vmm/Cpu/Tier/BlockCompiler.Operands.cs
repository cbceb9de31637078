using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Tier;

// Operands of compiled code: guest registers in IL locals, effective addresses, and memory through the inline TLB probe with the interpreter's slow path out of line.
internal sealed unsafe partial class BlockCompiler
{
    /// <summary>Pushes register operand <paramref name="r"/> of 2^log bytes, zero-extended (8-bit: a byte offset, AH = 1).</summary>
    private void LdReg(int r, int log)
    {
        if (r >= 16 && log > 0) { _il.Emit(OpCodes.Ldc_I8, 0L); return; }
        if (log == 0)
        {
            _il.Emit(OpCodes.Ldloc, _r[r >> 3]!);
            if ((r & 7) != 0) { _il.Emit(OpCodes.Ldc_I4, 8 * (r & 7)); _il.Emit(OpCodes.Shr_Un); }
        }
        else _il.Emit(OpCodes.Ldloc, _r[r]!);
        Truncate(log);
    }

    /// <summary>
    /// Pushes register operand <paramref name="r"/> of 2^log bytes with whatever lies above it, for
    /// a consumer that truncates or sign-extends anyway (the result of add/sub/logic, imul): the
    /// zero extension of each operand would cost the JIT a register copy per operand.
    /// </summary>
    private void LdRegWide(int r, int log)
    {
        if (log == 3 || r >= 16) { LdReg(r, log); return; }
        if (log == 0)
        {
            _il.Emit(OpCodes.Ldloc, _r[r >> 3]!);
            if ((r & 7) != 0) { _il.Emit(OpCodes.Ldc_I4, 8 * (r & 7)); _il.Emit(OpCodes.Shr_Un); }
        }
        else _il.Emit(OpCodes.Ldloc, _r[r]!);
    }

    /// <summary>Zero-extends the int64 on the stack from 2^log bytes.</summary>
    private void Truncate(int log)
    {
        switch (log)
        {
            case 0: _il.Emit(OpCodes.Conv_U1); _il.Emit(OpCodes.Conv_U8); break;
            case 1: _il.Emit(OpCodes.Conv_U2); _il.Emit(OpCodes.Conv_U8); break;
            case 2: _il.Emit(OpCodes.Conv_U4); _il.Emit(OpCodes.Conv_U8); break;
        }
    }

    /// <summary>Sign-extends the int64 on the stack from 2^log bytes.</summary>
    private void SignExtend(int log)
    {
        switch (log)
        {
            case 0: _il.Emit(OpCodes.Conv_I1); _il.Emit(OpCodes.Conv_I8); break;
            case 1: _il.Emit(OpCodes.Conv_I2); _il.Emit(OpCodes.Conv_I8); break;
            case 2: _il.Emit(OpCodes.Conv_I4); _il.Emit(OpCodes.Conv_I8); break;
        }
    }

    /// <summary>Writes the int64 on the stack to register operand <paramref name="r"/>: 8/16-bit merge, 32-bit zero-extends.</summary>
    private void StReg(int r, int log)
    {
        Truncate(log);
        int idx = log == 0 ? r >> 3 : r, sh = log == 0 ? 8 * (r & 7) : 0;
        _written[idx] = true;
        if (log >= 2) { _il.Emit(OpCodes.Stloc, _r[r]!); return; }
        ulong keep = ~((log == 0 ? 0xFFUL : 0xFFFFUL) << sh);
        if (sh != 0) { _il.Emit(OpCodes.Ldc_I4, sh); _il.Emit(OpCodes.Shl); }
        _il.Emit(OpCodes.Ldloc, _r[idx]!);
        _il.Emit(OpCodes.Ldc_I8, unchecked((long)keep));
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Or);
        _il.Emit(OpCodes.Stloc, _r[idx]!);
    }

    private void PushImm(int imm, int log)
    {
        _il.Emit(OpCodes.Ldc_I8, (long)imm);
        Truncate(log);
    }

    /// <summary>va = the effective address of op <paramref name="i"/>.</summary>
    private void Ea(int i)
    {
        ref Op op = ref _snap[i];
        LdReg(op.B, 3);
        if (op.I < 16)
        {
            LdReg(op.I, 3);
            if (op.Scale != 0) { _il.Emit(OpCodes.Ldc_I4, (int)op.Scale); _il.Emit(OpCodes.Shl); }
            _il.Emit(OpCodes.Add);
        }
        if (op.Disp != 0) { _il.Emit(OpCodes.Ldc_I8, op.Disp); _il.Emit(OpCodes.Add); }
        if (op.Seg != 0) { LoadField(StateLayout.SegBase + 8 * op.Seg); _il.Emit(OpCodes.Add); }
        _il.Emit(OpCodes.Stloc, _va);
    }

    /// <summary>
    /// e = the TLB entry for va; branches to <paramref name="slow"/> unless it maps va for 2^log
    /// bytes within the page. The probe of Mem.Entry and Mem.Tag: the index scaled in one shift
    /// and mask, and the page crossing folded into the tag compare (the tag asked for is the page
    /// of the access's last byte, which the entry of its first page cannot hold).
    /// </summary>
    private void Probe(LocalBuilder tlb, int log, Label slow)
    {
        int entryLog = System.Numerics.BitOperations.Log2((uint)StateLayout.EntrySize);
        _il.Emit(OpCodes.Ldloc, tlb);
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Ldc_I4, 12 - entryLog);
        _il.Emit(OpCodes.Shr_Un);
        _il.Emit(OpCodes.Ldc_I8, (long)(Mem.TlbMask << entryLog));
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Conv_I);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, _e);
        // tag == ((va + bytes - 1) & PageMask) | cpl bit
        _il.Emit(OpCodes.Ldloc, _e);
        _il.Emit(OpCodes.Ldind_I8);
        _il.Emit(OpCodes.Ldloc, _va);
        if (log > 0)
        {
            _il.Emit(OpCodes.Ldc_I8, (long)((1 << log) - 1));
            _il.Emit(OpCodes.Add);
        }
        _il.Emit(OpCodes.Ldc_I8, unchecked((long)Mem.PageMask));
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Ldloc, _cpl);
        _il.Emit(OpCodes.Or);
        _il.Emit(OpCodes.Bne_Un, slow);
    }

    /// <summary>Host address va + e->Addend on the stack.</summary>
    private void HostAddr()
    {
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Ldloc, _e);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.EntryAddend);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I8);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Conv_U);
    }

    /// <summary>v = the 2^log bytes at va (zero-extended), as op <paramref name="i"/> reads them.</summary>
    private void Read(int i, int log)
    {
        var slow = _il.DefineLabel();
        var done = _il.DefineLabel();
        Probe(_tlbR, log, slow);
        HostAddr();
        LoadIndirect(log);
        _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Stloc, _v);
        _il.MarkLabel(done);
        int pending = _pending;
        AddOutOfLine(() =>
        {
            // The interpreter's slow path (walk, translate, fill, may fault or service requests):
            // everything it can observe is written back (the flags here, the rest in the shared
            // tail), CurOp names the instruction.
            _il.MarkLabel(slow);
            Bump("read slow", 1);
            SpillFlags(pending);
            SetSite(i);
            _il.Emit(OpCodes.Ldc_I4, _readReturns.Count);
            _il.Emit(OpCodes.Stloc, _site);
            _il.Emit(OpCodes.Ldc_I4, 1 << log);
            _il.Emit(OpCodes.Stloc, _n);
            _readReturns.Add(done);
            _il.Emit(OpCodes.Br, _readTail);
        });
    }

    /// <summary>
    /// Writes the 2^log bytes the <paramref name="value"/> action pushes to va, as op <paramref name="i"/>.
    /// A write the fast path refuses (miss, page crossing, page holding code) is left to the
    /// interpreter: it runs op <paramref name="i"/> from the start (nothing of it has happened
    /// yet) with its own slow path, which may invalidate this very block, and the rest of the block.
    /// </summary>
    private void Write(int i, int log, Action value)
    {
        var slow = _il.DefineLabel();
        ProbeWritable(log, slow);
        HostAddr();
        value();
        StoreIndirect(log);
        HandOverAt(slow, i);
    }

    /// <summary>
    /// Read-modify-write of the 2^log bytes at va as op <paramref name="i"/>, through the write TLB
    /// (as the interpreter's Mem.TryRmw): _d = the old value, then the value <paramref name="compute"/>
    /// pushes (it may read _d and set the flag locals) is stored. A refused probe (miss, page
    /// crossing, page holding code) hands the instruction to the interpreter before any of it
    /// has happened.
    /// </summary>
    private void Rmw(int i, int log, Action compute)
    {
        var slow = _il.DefineLabel();
        HandOverAt(slow, i);
        ProbeWritable(log, slow);
        HostAddr();
        _il.Emit(OpCodes.Stloc, _hp);
        _il.Emit(OpCodes.Ldloc, _hp);
        LoadIndirect(log);
        _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Stloc, _d);
        compute();
        _il.Emit(OpCodes.Stloc, _v);
        _il.Emit(OpCodes.Ldloc, _hp);
        _il.Emit(OpCodes.Ldloc, _v);
        StoreIndirect(log);
    }

    /// <summary>Host pointer on the stack: load the guest operand of 1 &lt;&lt; <paramref name="log"/> bytes, zero-extended.</summary>
    private void LoadIndirect(int log) => _il.Emit(log switch
    {
        0 => OpCodes.Ldind_U1,
        1 => OpCodes.Ldind_U2,
        2 => OpCodes.Ldind_U4,
        _ => OpCodes.Ldind_I8,
    });

    /// <summary>Host pointer and value on the stack: store the low 1 &lt;&lt; <paramref name="log"/> bytes of the value.</summary>
    private void StoreIndirect(int log) => _il.Emit(log switch
    {
        0 => OpCodes.Stind_I1,
        1 => OpCodes.Stind_I2,
        2 => OpCodes.Stind_I4,
        _ => OpCodes.Stind_I8,
    });

    /// <summary>
    /// The write TLB probe for 2^log bytes, refusing (to <paramref name="slow"/>) a page that
    /// holds code as well as a miss or a page crossing; leaves the entry in <c>_e</c>.
    /// </summary>
    private void ProbeWritable(int log, Label slow)
    {
        Probe(_tlbW, log, slow);
        _il.Emit(OpCodes.Ldloc, _e);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.EntryCode);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I);
        _il.Emit(OpCodes.Ldind_U1);
        _il.Emit(OpCodes.Brtrue, slow);
    }
}
