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
internal sealed unsafe partial class BlockCompiler
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
}
