using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Tier;

/// <summary>
/// Compiles one decoded block to a <see cref="DynamicMethod"/> with the handler signature
/// <c>Op* (CpuState*, Op*)</c>, so it can stand in op 0's handler.
/// </summary>
/// <remarks>
/// Shape (vmm/Cpu/README.md, "Translation tier"): the guest registers the block uses are
/// loaded into IL locals at entry; each compilable op becomes inline IL; memory goes through
/// an inline probe of the same TLB the interpreter uses, with the interpreter's slow path
/// out of line; the lazy flags of the last flag-setting op live in locals and reach the
/// CpuState only on a path that leaves the compiled code. Every such path (block end, a slow
/// path that may fault or service requests, the hand-over to the interpreter) first writes
/// the registers and flags back and sets <c>CurOp</c> to the op it stands at, so faults,
/// retired counts and the shootdown see exactly what the interpreter would show there.
/// The compiled prefix ends at the first op not in <see cref="HandlerTable"/>: from there the
/// interpreter runs the rest of the block (its handler is called as the interpreter would).
/// </remarks>
internal sealed unsafe class BlockCompiler
{
    private static readonly Type OpPtr = typeof(Op).MakePointerType();
    private static readonly Type StatePtr = typeof(CpuState).MakePointerType();
    private static readonly MethodInfo ReadSlowM = typeof(TierHelpers).GetMethod(nameof(TierHelpers.ReadSlow))!;
    private static readonly MethodInfo CondM = typeof(TierHelpers).GetMethod(nameof(TierHelpers.Cond))!;
    private static readonly MethodInfo ImulM = typeof(TierHelpers).GetMethod(nameof(TierHelpers.Imul64))!;
    private static readonly MethodInfo LinkOfM = typeof(TierHelpers).GetMethod(nameof(TierHelpers.LinkOf))!;
    private static readonly MethodInfo HasRequestsM = typeof(ToyVmm.Mmu.Secondary.VcpuLink).GetProperty(nameof(ToyVmm.Mmu.Secondary.VcpuLink.HasRequests))!.GetMethod!;
    private static readonly MethodInfo ChainM = typeof(Exec).GetMethod(nameof(Exec.Chain))!;

    /// <summary>Ops compiled by the last <see cref="Compile"/> (the rest run interpreted).</summary>
    public int CompiledOps { get; private set; }

    private readonly Block* _b;
    private readonly Op* _ops;
    private readonly Op[] _snap;
    private IlWriter _il = null!;
    private readonly System.Text.StringBuilder? _listing;
    private readonly LocalBuilder?[] _r = new LocalBuilder?[16];
    private LocalBuilder _va = null!, _e = null!, _v = null!, _tlbR = null!, _tlbW = null!, _cpl = null!;
    private LocalBuilder _fRes = null!, _fDst = null!, _fSrc = null!, _fAux = null!;
    private readonly List<Action> _outOfLine = new();
    private bool[] _written = new bool[16];   // registers written so far on the path being emitted (only those are stored back)
    private Label _top;                 // after the prologue: where a block that branches to itself loops
    private LocalBuilder? _link;        // the vCPU's link, for a self-loop's request check

    // The lazy flags at the point being emitted: 0 = the CpuState holds them; else
    // Flags kind << 2 | size log, with the values in _fRes/_fDst/_fSrc.
    private int _pending;

    private BlockCompiler(Block* b, Op[] snapshot, System.Text.StringBuilder? listing = null)
    {
        _listing = listing;
        _b = b;
        _ops = Block.OpsOf(b);
        _snap = snapshot;
    }

    /// <summary>
    /// The ops of the compilable prefix of <paramref name="snapshot"/> (a copy of the block's ops
    /// with op 0's own handler), or 0 when not even op 0 compiles.
    /// </summary>
    public static int PrefixLength(Op[] snapshot)
    {
        int n = 0;
        foreach (var op in snapshot)
        {
            if (!HandlerTable.TryGet((nint)op.H, out var info) || !HandlerTable.Compilable(info, op)) break;
            n++;
            if (info.Kind is CKind.Jcc or CKind.Jmp or CKind.Call or CKind.Ret) break;
        }
        return n;
    }

    /// <summary>Emits the block; null when its first op is not compilable.</summary>
    public static DynamicMethod? Compile(Block* b, Op[] snapshot, out int compiledOps)
    {
        var c = new BlockCompiler(b, snapshot);
        var m = c.Emit();
        compiledOps = c.CompiledOps;
        return m;
    }

    /// <summary>The IL the compiler emits for the block, as text (null when nothing compiles).</summary>
    public static string? Listing(Block* b, Op[] snapshot)
    {
        var text = new System.Text.StringBuilder();
        var c = new BlockCompiler(b, snapshot, text);
        return c.Emit() == null ? null : text.ToString();
    }

    private DynamicMethod? Emit()
    {
        int n = PrefixLength(_snap);
        CompiledOps = n;
        if (n == 0) return null;
        var m = new DynamicMethod($"block_{_b->Va:x}", OpPtr, [StatePtr, OpPtr], typeof(BlockCompiler).Module, skipVisibility: true);
        _il = new IlWriter(m.GetILGenerator(), _listing);
        _va = _il.DeclareLocal(typeof(ulong));
        _v = _il.DeclareLocal(typeof(ulong));
        _e = _il.DeclareLocal(typeof(nint));
        _tlbR = _il.DeclareLocal(typeof(nint));
        _tlbW = _il.DeclareLocal(typeof(nint));
        _cpl = _il.DeclareLocal(typeof(ulong));
        _fRes = _il.DeclareLocal(typeof(ulong));
        _fDst = _il.DeclareLocal(typeof(ulong));
        _fSrc = _il.DeclareLocal(typeof(ulong));
        _fAux = _il.DeclareLocal(typeof(ulong));

        // A call with a null state only makes the JIT compile the method (off the vCPU thread).
        var go = _il.DefineLabel();
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Brtrue, go);
        _il.Emit(OpCodes.Ldc_I4_0);
        _il.Emit(OpCodes.Conv_U);
        _il.Emit(OpCodes.Ret);
        _il.MarkLabel(go);

        // Inside compiled code the vCPU is never seen quiet (TlbShootdown.cs, mmu/LOCKING.md):
        // CurOp is null until a path leaves the compiled code and stores the op it stands at.
        StoreCurOp(-1);
        for (int i = 0; i < n; i++) CollectRegs(i);
        for (int r = 0; r < 16; r++)
            if (_r[r] != null) { LoadField(StateLayout.Regs + 8 * r); _il.Emit(OpCodes.Stloc, _r[r]!); }
        LoadPtrField(StateLayout.TlbRead, _tlbR);
        LoadPtrField(StateLayout.TlbWrite, _tlbW);
        LoadField(StateLayout.TlbCplBit);
        _il.Emit(OpCodes.Stloc, _cpl);
        if (LoopsToItself(n))
        {
            _link = _il.DeclareLocal(typeof(ToyVmm.Mmu.Secondary.VcpuLink));
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Call, LinkOfM);
            _il.Emit(OpCodes.Stloc, _link);
            // From the second time round, a register written anywhere in the body may differ
            // from the CpuState at any point: every exit stores them all.
            for (int r = 0; r < 16; r++) _written[r] = _r[r] != null;
        }
        _top = _il.DefineLabel();
        _il.MarkLabel(_top);

        bool ended = false;
        for (int i = 0; i < n && !ended; i++) ended = EmitOp(i);
        if (!ended) HandOver(n, _pending, _written);
        foreach (var a in _outOfLine) a();
        return m;
    }

    /// <summary>Whether the compiled prefix ends in a jmp or jcc back to the block's own start.</summary>
    private bool LoopsToItself(int n)
    {
        var last = Info(n - 1);
        return last.Kind is CKind.Jcc or CKind.Jmp && (ulong)_snap[n - 1].Disp == _b->Va;
    }

    /// <summary>
    /// The branch of op <paramref name="i"/> back to the block's start, taken: go round inside the
    /// compiled code, registers staying in locals, when chaining to itself would go on (the
    /// checks of Exec.Chain: chain budget, exit reason, link requests, and the block still
    /// valid); the finished iteration is counted as retired, and the lazy flags are stored, as
    /// the next iteration starts with the flags in the CpuState. Otherwise fall through to the
    /// ordinary block exit, which chains or returns to the run loop.
    /// </summary>
    private void EmitSelfLoop(int i, Label exit)
    {
        var retired = _il.DeclareLocal(typeof(long));
        LoadField(StateLayout.Retired);
        _il.Emit(OpCodes.Ldc_I8, (long)(i + 1));
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, retired);
        _il.Emit(OpCodes.Ldloc, retired);
        LoadField(StateLayout.ChainLimit);
        _il.Emit(OpCodes.Bge, exit);
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.ExitReason);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I4);
        _il.Emit(OpCodes.Brtrue, exit);
        PushPtr((nint)_b + StateLayout.BlockValid);
        _il.Emit(OpCodes.Volatile);
        _il.Emit(OpCodes.Ldind_I4);
        _il.Emit(OpCodes.Brfalse, exit);
        _il.Emit(OpCodes.Ldloc, _link!);
        _il.Emit(OpCodes.Callvirt, HasRequestsM);
        _il.Emit(OpCodes.Brtrue, exit);
        StoreField(StateLayout.Retired, () => _il.Emit(OpCodes.Ldloc, retired));
        SpillFlags(_pending);
        _il.Emit(OpCodes.Br, _top);
    }

    private void CollectRegs(int i)
    {
        var info = Info(i);
        ref Op op = ref _snap[i];
        void Use(int r) { if (r < 16) _r[r] ??= _il.DeclareLocal(typeof(ulong)); }
        void UseSized(int r, int log) => Use(log == 0 ? r >> 3 : r);
        bool mem = info.Kind is CKind.MovRM or CKind.MovMR or CKind.MovMI or CKind.Lea or CKind.ZxM or CKind.SxM
            || (info.Kind == CKind.Alu && info.Form is CForm.RM or CForm.MR or CForm.MI);
        if (mem) { Use(op.B); Use(op.I); }
        switch (info.Kind)
        {
            case CKind.MovRR: case CKind.Imul: UseSized(op.R, info.Log); UseSized(op.R2, info.Log); break;
            case CKind.SxR: Use(op.R); Use(op.R2); break;
            case CKind.Alu: UseSized(op.R, info.Log); if (info.Form == CForm.RR) UseSized(op.R2, info.Log); break;
            case CKind.MovRI: case CKind.MovRI64: case CKind.MovRM: case CKind.MovMR: case CKind.Lea: case CKind.ZxM: case CKind.SxM:
            case CKind.Not: case CKind.Neg: case CKind.Shift:
                UseSized(op.R, info.Log); break;
            case CKind.Call: case CKind.Ret: Use(4); break;
        }
    }

    private OpInfo Info(int i)
    {
        HandlerTable.TryGet((nint)_snap[i].H, out var info);
        return info;
    }

    private nint OpAddr(int i) => (nint)(_ops + i);

    private ulong NextRip(int i) => _b->Va + _snap[i].RipOff + _snap[i].Len;

    // ---- state access ----

    private void LoadField(int off)
    {
        _il.Emit(OpCodes.Ldarg_0);
        if (off != 0) { _il.Emit(OpCodes.Ldc_I4, off); _il.Emit(OpCodes.Add); }
        _il.Emit(OpCodes.Ldind_I8);
    }

    private void LoadPtrField(int off, LocalBuilder into)
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, off);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I);
        _il.Emit(OpCodes.Stloc, into);
    }

    /// <summary>Stores the int64 the <paramref name="value"/> action pushes into the state at <paramref name="off"/>.</summary>
    private void StoreField(int off, Action value)
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, off);
        _il.Emit(OpCodes.Add);
        value();
        _il.Emit(OpCodes.Stind_I8);
    }

    private void PushPtr(nint p)
    {
        _il.Emit(OpCodes.Ldc_I8, (long)p);
        _il.Emit(OpCodes.Conv_I);
    }

    /// <summary>CurOp = op <paramref name="i"/> (-1: null).</summary>
    private void StoreCurOp(int i)
    {
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.CurOp);
        _il.Emit(OpCodes.Add);
        if (i < 0) { _il.Emit(OpCodes.Ldc_I4_0); _il.Emit(OpCodes.Conv_U); }
        else PushPtr(OpAddr(i));
        _il.Emit(OpCodes.Stind_I);
    }

    /// <summary>Registers and lazy flags back into the CpuState (before anything that can observe them).</summary>
    private void Spill(int pending, bool[] written)
    {
        for (int r = 0; r < 16; r++)
        {
            var l = _r[r];
            if (l != null && written[r]) StoreField(StateLayout.Regs + 8 * r, () => _il.Emit(OpCodes.Ldloc, l));
        }
        SpillFlags(pending);
    }

    /// <summary>The lazy flags held in locals back into the CpuState.</summary>
    private void SpillFlags(int pending)
    {
        if (pending == 0) return;
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.LKind);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldc_I4, pending);
        _il.Emit(OpCodes.Stind_I4);
        StoreField(StateLayout.LRes, () => _il.Emit(OpCodes.Ldloc, _fRes));
        if (pending >> 2 == Flags.ResCO)
            StoreField(StateLayout.LAux, () => _il.Emit(OpCodes.Ldloc, _fAux));
        else if (pending >> 2 != Flags.Logic)
        {
            StoreField(StateLayout.LDst, () => _il.Emit(OpCodes.Ldloc, _fDst));
            StoreField(StateLayout.LSrc, () => _il.Emit(OpCodes.Ldloc, _fSrc));
        }
    }

    /// <summary>Leave the compiled code at op <paramref name="i"/>: the interpreter runs it and the rest of the block.</summary>
    private void HandOver(int i, int pending, bool[] written)
    {
        Spill(pending, written);
        StoreCurOp(i);
        _il.Emit(OpCodes.Ldarg_0);
        PushPtr(OpAddr(i));
        if (i == 0)
        {
            // Op 0's slot holds this compiled code: run op 0's own handler. The vCPU entered
            // op 0 when it entered this code, so it completes op 0 as decoded, as the
            // interpreter completes a handler it has entered.
            PushPtr((nint)_snap[0].H);
        }
        else
        {
            PushPtr(OpAddr(i));
            _il.Emit(OpCodes.Ldind_I);   // the op's handler as it is now (the bail-out once invalidated)
        }
        _il.EmitCalli(OpCodes.Calli, CallingConventions.Standard, OpPtr, [StatePtr, OpPtr], null);
        _il.Emit(OpCodes.Ret);
    }

    // ---- operands ----

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

    /// <summary>e = the TLB entry for va; branches to <paramref name="slow"/> unless it maps va for 2^log bytes within the page.</summary>
    private void Probe(LocalBuilder tlb, int log, Label slow)
    {
        _il.Emit(OpCodes.Ldloc, tlb);
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Ldc_I4, 12);
        _il.Emit(OpCodes.Shr_Un);
        _il.Emit(OpCodes.Ldc_I8, (long)Mem.TlbMask);
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Ldc_I4, 5);
        _il.Emit(OpCodes.Shl);
        _il.Emit(OpCodes.Conv_I);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, _e);
        // tag == (va & PageMask) | cpl bit
        _il.Emit(OpCodes.Ldloc, _e);
        _il.Emit(OpCodes.Ldind_I8);
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Ldc_I8, unchecked((long)Mem.PageMask));
        _il.Emit(OpCodes.And);
        _il.Emit(OpCodes.Ldloc, _cpl);
        _il.Emit(OpCodes.Or);
        _il.Emit(OpCodes.Bne_Un, slow);
        if (log > 0)
        {
            _il.Emit(OpCodes.Ldloc, _va);
            _il.Emit(OpCodes.Ldc_I8, 0xFFFL);
            _il.Emit(OpCodes.And);
            _il.Emit(OpCodes.Ldc_I8, (long)(4096 - (1 << log)));
            _il.Emit(OpCodes.Bgt_Un, slow);
        }
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
        switch (log)
        {
            case 0: _il.Emit(OpCodes.Ldind_U1); break;
            case 1: _il.Emit(OpCodes.Ldind_U2); break;
            case 2: _il.Emit(OpCodes.Ldind_U4); break;
            default: _il.Emit(OpCodes.Ldind_I8); break;
        }
        _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Stloc, _v);
        _il.MarkLabel(done);
        int pending = _pending;
        bool[] written = (bool[])_written.Clone();
        _outOfLine.Add(() =>
        {
            // The interpreter's slow path (walk, translate, fill, may fault or service requests):
            // everything it can observe is written back, CurOp names the instruction.
            _il.MarkLabel(slow);
            Spill(pending, written);
            StoreCurOp(i);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldloc, _va);
            _il.Emit(OpCodes.Ldc_I4, 1 << log);
            _il.Emit(OpCodes.Call, ReadSlowM);
            _il.Emit(OpCodes.Stloc, _v);
            StoreCurOp(-1);
            _il.Emit(OpCodes.Br, done);
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
        Probe(_tlbW, log, slow);
        _il.Emit(OpCodes.Ldloc, _e);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.EntryCode);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I);
        _il.Emit(OpCodes.Ldind_U1);
        _il.Emit(OpCodes.Brtrue, slow);
        HostAddr();
        value();
        switch (log)
        {
            case 0: _il.Emit(OpCodes.Stind_I1); break;
            case 1: _il.Emit(OpCodes.Stind_I2); break;
            case 2: _il.Emit(OpCodes.Stind_I4); break;
            default: _il.Emit(OpCodes.Stind_I8); break;
        }
        int pending = _pending;
        bool[] written = (bool[])_written.Clone();
        _outOfLine.Add(() =>
        {
            _il.MarkLabel(slow);
            HandOver(i, pending, written);
        });
    }

    // ---- ops ----

    /// <summary>Emits op <paramref name="i"/>; true when it ended the compiled code (a control transfer).</summary>
    private bool EmitOp(int i)
    {
        var info = Info(i);
        ref Op op = ref _snap[i];
        int lg = info.Log;
        switch (info.Kind)
        {
            case CKind.Nop: return false;
            case CKind.MovRR: LdReg(op.R2, lg); StReg(op.R, lg); return false;
            case CKind.MovRI: PushImm(op.Imm, lg); StReg(op.R, lg); return false;
            case CKind.MovRI64: _il.Emit(OpCodes.Ldc_I8, op.Disp); StReg(op.R, 3); return false;
            case CKind.Lea: Ea(i); _il.Emit(OpCodes.Ldloc, _va); StReg(op.R, lg); return false;
            case CKind.MovRM: Ea(i); Read(i, lg); _il.Emit(OpCodes.Ldloc, _v); StReg(op.R, lg); return false;
            case CKind.ZxM: Ea(i); Read(i, info.SrcLog); _il.Emit(OpCodes.Ldloc, _v); StReg(op.R, lg); return false;
            case CKind.SxM: Ea(i); Read(i, info.SrcLog); _il.Emit(OpCodes.Ldloc, _v); SignExtend(info.SrcLog); StReg(op.R, lg); return false;
            case CKind.SxR: LdReg(op.R2, info.SrcLog); SignExtend(info.SrcLog); StReg(op.R, lg); return false;
            case CKind.MovMR:
            {
                int r = op.R;
                Ea(i);
                Write(i, lg, () => LdReg(r, lg));
                return false;
            }
            case CKind.MovMI:
            {
                int imm = op.Imm;
                Ea(i);
                Write(i, lg, () => PushImm(imm, lg));
                return false;
            }
            case CKind.Alu: EmitAlu(i, info); return false;
            case CKind.Not: LdReg(op.R, lg); _il.Emit(OpCodes.Not); StReg(op.R, lg); return false;
            case CKind.Neg: EmitNeg(i, lg); return false;
            case CKind.Imul: EmitImul(i, lg); return false;
            case CKind.Shift: EmitShift(i, lg); return false;
            case CKind.Jcc: EmitJcc(i, info.Cc); return true;
            case CKind.Jmp:
            {
                long t = op.Disp;
                if (_link != null && (ulong)t == _b->Va)
                {
                    var exit = _il.DefineLabel();
                    EmitSelfLoop(i, exit);
                    _il.MarkLabel(exit);
                }
                EmitTransfer(i, () => _il.Emit(OpCodes.Ldc_I8, t));
                return true;
            }
            case CKind.Call: EmitCall(i); return true;
            case CKind.Ret: EmitRet(i); return true;
        }
        throw new InvalidOperationException($"no emitter for {info.Kind}");
    }

    private void EmitAlu(int i, OpInfo info)
    {
        ref Op op = ref _snap[i];
        int lg = info.Log;
        var d = _il.DeclareLocal(typeof(ulong));
        var x = _il.DeclareLocal(typeof(ulong));
        switch (info.Form)
        {
            case CForm.RR: LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, d); LdReg(op.R2, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.RI: LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, d); PushImm(op.Imm, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.RM: Ea(i); Read(i, lg); LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, d); _il.Emit(OpCodes.Ldloc, _v); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.MR: Ea(i); Read(i, lg); _il.Emit(OpCodes.Ldloc, _v); _il.Emit(OpCodes.Stloc, d); LdReg(op.R, lg); _il.Emit(OpCodes.Stloc, x); break;
            case CForm.MI: Ea(i); Read(i, lg); _il.Emit(OpCodes.Ldloc, _v); _il.Emit(OpCodes.Stloc, d); PushImm(op.Imm, lg); _il.Emit(OpCodes.Stloc, x); break;
        }
        _il.Emit(OpCodes.Ldloc, d);
        _il.Emit(OpCodes.Ldloc, x);
        int kind;
        switch (info.Alu)
        {
            case CAlu.Add: _il.Emit(OpCodes.Add); kind = Flags.Add; break;
            case CAlu.Sub: case CAlu.Cmp: _il.Emit(OpCodes.Sub); kind = Flags.Sub; break;
            case CAlu.And: case CAlu.Test: _il.Emit(OpCodes.And); kind = Flags.Logic; break;
            case CAlu.Or: _il.Emit(OpCodes.Or); kind = Flags.Logic; break;
            default: _il.Emit(OpCodes.Xor); kind = Flags.Logic; break;
        }
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        if (kind != Flags.Logic)
        {
            _il.Emit(OpCodes.Ldloc, d);
            _il.Emit(OpCodes.Stloc, _fDst);
            _il.Emit(OpCodes.Ldloc, x);
            _il.Emit(OpCodes.Stloc, _fSrc);
        }
        _pending = kind << 2 | lg;
        if (info.Alu is not (CAlu.Cmp or CAlu.Test))
        {
            _il.Emit(OpCodes.Ldloc, _fRes);
            StReg(op.R, lg);
        }
    }

    private void EmitNeg(int i, int lg)
    {
        int r = _snap[i].R;
        // Flags as sub 0, d: LDst 0, LSrc d.
        LdReg(r, lg);
        _il.Emit(OpCodes.Stloc, _fSrc);
        _il.Emit(OpCodes.Ldc_I8, 0L);
        _il.Emit(OpCodes.Stloc, _fDst);
        _il.Emit(OpCodes.Ldc_I8, 0L);
        _il.Emit(OpCodes.Ldloc, _fSrc);
        _il.Emit(OpCodes.Sub);
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        _il.Emit(OpCodes.Ldloc, _fRes);
        StReg(r, lg);
        _pending = Flags.Sub << 2 | lg;
    }

    /// <summary>imul r, r[, imm]: the truncated product, CF = OF = the signed product did not fit (as Imul2R).</summary>
    private void EmitImul(int i, int lg)
    {
        ref Op op = ref _snap[i];
        if (op.X == 1) { _il.Emit(OpCodes.Ldc_I8, (long)op.Imm); Truncate(lg); } else LdReg(op.R, lg);
        SignExtend(lg);
        LdReg(op.R2, lg);
        SignExtend(lg);
        if (lg == 3)
        {
            _il.Emit(OpCodes.Ldloca, _fAux);
            _il.Emit(OpCodes.Call, ImulM);   // low 64 bits; _fAux = 3 when the product overflowed
        }
        else
        {
            _il.Emit(OpCodes.Mul);
            _il.Emit(OpCodes.Stloc, _v);
            // overflow: the 64-bit product differs from its low part sign-extended
            _il.Emit(OpCodes.Ldloc, _v);
            SignExtend(lg);
            _il.Emit(OpCodes.Ldloc, _v);
            _il.Emit(OpCodes.Ceq);
            _il.Emit(OpCodes.Ldc_I4_0);
            _il.Emit(OpCodes.Ceq);
            _il.Emit(OpCodes.Conv_U8);
            _il.Emit(OpCodes.Ldc_I4_3);
            _il.Emit(OpCodes.Conv_U8);
            _il.Emit(OpCodes.Mul);
            _il.Emit(OpCodes.Stloc, _fAux);
            _il.Emit(OpCodes.Ldloc, _v);
        }
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        _il.Emit(OpCodes.Ldloc, _fRes);
        StReg(op.R, lg);
        _pending = Flags.ResCO << 2 | lg;
    }

    /// <summary>shl/shr/sar r, imm with a nonzero count (as Shifts.Shift, cases 0..2).</summary>
    private void EmitShift(int i, int lg)
    {
        ref Op op = ref _snap[i];
        int bits = 8 << lg;
        int n = op.Imm & (lg == 3 ? 63 : 31);
        ulong sign = 1UL << (bits - 1);
        var d = _il.DeclareLocal(typeof(ulong));
        LdReg(op.R, lg);
        _il.Emit(OpCodes.Stloc, d);
        // result
        switch (op.X)
        {
            case 0: // shl: r = d << n (n < 64); cf = n <= bits && bit (bits - n) of d; of = msb(r) != cf
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n); _il.Emit(OpCodes.Shl); break;
            case 1: // shr: r = d >> n; cf = bit n-1 of d; of = msb(d)
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n); _il.Emit(OpCodes.Shr_Un); break;
            default: // sar: r = sx(d) >> n; cf = bit n-1 of sx(d); of = 0
                _il.Emit(OpCodes.Ldloc, d); SignExtend(lg); _il.Emit(OpCodes.Ldc_I4, n); _il.Emit(OpCodes.Shr); break;
        }
        Truncate(lg);
        _il.Emit(OpCodes.Stloc, _fRes);
        // CF into _fAux bit 0
        switch (op.X)
        {
            case 0:
                if (n <= bits)
                {
                    _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n - 1); _il.Emit(OpCodes.Shl);
                    _il.Emit(OpCodes.Ldc_I8, unchecked((long)sign)); _il.Emit(OpCodes.And);
                    _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                }
                else _il.Emit(OpCodes.Ldc_I4_0);
                break;
            case 1:
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I4, n - 1); _il.Emit(OpCodes.Shr_Un);
                _il.Emit(OpCodes.Ldc_I8, 1L); _il.Emit(OpCodes.And); _il.Emit(OpCodes.Conv_I4);
                break;
            default:
                _il.Emit(OpCodes.Ldloc, d); SignExtend(lg); _il.Emit(OpCodes.Ldc_I4, n - 1); _il.Emit(OpCodes.Shr);
                _il.Emit(OpCodes.Ldc_I8, 1L); _il.Emit(OpCodes.And); _il.Emit(OpCodes.Conv_I4);
                break;
        }
        var cf = _il.DeclareLocal(typeof(int));
        _il.Emit(OpCodes.Stloc, cf);
        // OF (0/1) on the stack
        switch (op.X)
        {
            case 0:
                _il.Emit(OpCodes.Ldloc, _fRes); _il.Emit(OpCodes.Ldc_I8, unchecked((long)sign)); _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                _il.Emit(OpCodes.Ldloc, cf); _il.Emit(OpCodes.Xor);
                break;
            case 1:
                _il.Emit(OpCodes.Ldloc, d); _il.Emit(OpCodes.Ldc_I8, unchecked((long)sign)); _il.Emit(OpCodes.And);
                _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt_Un);
                break;
            default:
                _il.Emit(OpCodes.Ldc_I4_0);
                break;
        }
        _il.Emit(OpCodes.Ldc_I4_1);
        _il.Emit(OpCodes.Shl);
        _il.Emit(OpCodes.Ldloc, cf);
        _il.Emit(OpCodes.Or);
        _il.Emit(OpCodes.Conv_U8);
        _il.Emit(OpCodes.Stloc, _fAux);
        _il.Emit(OpCodes.Ldloc, _fRes);
        StReg(op.R, lg);
        _pending = Flags.ResCO << 2 | lg;
    }

    /// <summary>Pushes 1 or 0: condition <paramref name="cc"/> of the flags as they stand (stored first when a helper reads them).</summary>
    private void Condition(int cc)
    {
        int k = _pending >> 2, lg = _pending & 3;
        int test = cc >> 1;
        bool inline = (k == Flags.Sub && test is 1 or 2 or 3 or 4 or 6 or 7)
            || (k == Flags.Logic && test is 0 or 1 or 2 or 3 or 4 or 6 or 7);
        if (!inline)
        {
            SpillFlags(_pending);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I4, cc);
            _il.Emit(OpCodes.Call, CondM);
            return;
        }
        void Sx(LocalBuilder l) { _il.Emit(OpCodes.Ldloc, l); SignExtend(lg); }
        void Not() { _il.Emit(OpCodes.Ldc_I4_0); _il.Emit(OpCodes.Ceq); }
        if (k == Flags.Sub)
        {
            switch (test)
            {
                case 1: _il.Emit(OpCodes.Ldloc, _fDst); _il.Emit(OpCodes.Ldloc, _fSrc); _il.Emit(OpCodes.Clt_Un); break;
                case 2: _il.Emit(OpCodes.Ldloc, _fDst); _il.Emit(OpCodes.Ldloc, _fSrc); _il.Emit(OpCodes.Ceq); break;
                case 3: _il.Emit(OpCodes.Ldloc, _fDst); _il.Emit(OpCodes.Ldloc, _fSrc); _il.Emit(OpCodes.Cgt_Un); Not(); break;
                case 4: Sx(_fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Clt); break;
                case 6: Sx(_fDst); Sx(_fSrc); _il.Emit(OpCodes.Clt); break;
                default: Sx(_fDst); Sx(_fSrc); _il.Emit(OpCodes.Cgt); Not(); break;
            }
        }
        else
        {
            switch (test)
            {
                case 0: case 1: _il.Emit(OpCodes.Ldc_I4_0); break;
                case 2: case 3: _il.Emit(OpCodes.Ldloc, _fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Ceq); break;
                case 4: case 6: Sx(_fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Clt); break;
                default: Sx(_fRes); _il.Emit(OpCodes.Ldc_I8, 0L); _il.Emit(OpCodes.Cgt); Not(); break;
            }
        }
        if ((cc & 1) != 0) Not();
    }

    /// <summary>Ends the block at control transfer op <paramref name="i"/>: RIP = the pushed target, then chain as the interpreter does.</summary>
    private void EmitTransfer(int i, Action target)
    {
        Spill(_pending, _written);
        StoreField(StateLayout.Rip, target);
        StoreCurOp(i);
        _il.Emit(OpCodes.Ldarg_0);
        PushPtr(OpAddr(i));
        _il.Emit(OpCodes.Call, ChainM);
        _il.Emit(OpCodes.Ret);
    }

    private void EmitJcc(int i, int cc)
    {
        ref Op op = ref _snap[i];
        long taken = op.Disp, fall = (long)NextRip(i);
        var yes = _il.DefineLabel();
        var join = _il.DefineLabel();
        Condition(cc);
        _il.Emit(OpCodes.Brtrue, yes);
        _il.Emit(OpCodes.Ldc_I8, fall);
        _il.Emit(OpCodes.Stloc, _v);
        _il.Emit(OpCodes.Br, join);
        _il.MarkLabel(yes);
        if (_link != null && (ulong)taken == _b->Va)
        {
            var exit = _il.DefineLabel();
            EmitSelfLoop(i, exit);
            _il.MarkLabel(exit);
        }
        _il.Emit(OpCodes.Ldc_I8, taken);
        _il.Emit(OpCodes.Stloc, _v);
        _il.MarkLabel(join);
        EmitTransfer(i, () => _il.Emit(OpCodes.Ldloc, _v));
    }

    private void EmitCall(int i)
    {
        long target = _snap[i].Disp, ret = (long)NextRip(i);
        // push the return address (may fault: RSP unchanged then), then jump
        LdReg(4, 3);
        _il.Emit(OpCodes.Ldc_I8, 8L);
        _il.Emit(OpCodes.Sub);
        _il.Emit(OpCodes.Stloc, _va);
        Write(i, 3, () => _il.Emit(OpCodes.Ldc_I8, ret));
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Stloc, _r[4]!);
        _written[4] = true;
        EmitTransfer(i, () => _il.Emit(OpCodes.Ldc_I8, target));
    }

    private void EmitRet(int i)
    {
        int extra = (ushort)_snap[i].Imm;
        LdReg(4, 3);
        _il.Emit(OpCodes.Stloc, _va);
        Read(i, 3);
        _il.Emit(OpCodes.Ldloc, _va);
        _il.Emit(OpCodes.Ldc_I8, 8L + extra);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, _r[4]!);
        _written[4] = true;
        EmitTransfer(i, () => _il.Emit(OpCodes.Ldloc, _v));
    }
}

/// <summary>The calls compiled code makes out of line: the interpreter's own slow paths.</summary>
internal static unsafe class TierHelpers
{
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static ulong ReadSlow(CpuState* s, ulong va, int n) => Vcpu.Of(s).ReadSlow(va, n);

    /// <summary>The vCPU's link (read once at the entry of a block that loops to itself).</summary>
    public static ToyVmm.Mmu.Secondary.VcpuLink LinkOf(CpuState* s) =>
        Unsafe.As<ToyVmm.Mmu.Secondary.VcpuLink>(System.Runtime.InteropServices.GCHandle.FromIntPtr(s->LinkHandle).Target)!;

    /// <summary>64-bit imul: the low half; <paramref name="aux"/> = 3 (CF and OF) when the signed product does not fit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Imul64(long a, long b, out ulong aux)
    {
        long hi = Math.BigMul(a, b, out long lo);
        aux = hi != (lo >> 63) ? 3UL : 0;
        return (ulong)lo;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public static int Cond(CpuState* s, int cc) => Flags.Cond(s, cc) ? 1 : 0;
}
