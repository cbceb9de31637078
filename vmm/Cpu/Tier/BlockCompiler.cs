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
    private static readonly MethodInfo ChainM = typeof(TierHelpers).GetMethod(nameof(TierHelpers.Chain))!;
    private static readonly MethodInfo LimitM = typeof(TierHelpers).GetMethod(nameof(TierHelpers.Limit))!;
    private static readonly MethodInfo LinkOfM = typeof(TierHelpers).GetMethod(nameof(TierHelpers.LinkOf))!;
    private static readonly MethodInfo HasRequestsM = typeof(ToyVmm.Mmu.Secondary.VcpuLink).GetProperty(nameof(ToyVmm.Mmu.Secondary.VcpuLink.HasRequests))!.GetMethod!;

    /// <summary>
    /// Instructions compiled code may run per entry from the run loop, through its regions' edges
    /// and its chains to other blocks (the interpreter's chains stop at <see cref="Vcpu.ChainBudget"/>).
    /// Returning to the run loop every chain budget cost compiled loops about a fifth of their
    /// speed (bench/RESULTS.md, "The tier's own budget"); compiled code polls the link's requests
    /// instead (at every region edge, and at every chain past the chain budget), so a flush is
    /// still acknowledged within one pass of a region; this bounds the time between code-cache
    /// grace-period acknowledgements (a few microseconds of compiled code).
    /// </summary>
    public const int RegionBudget = 16 * Vcpu.ChainBudget;

    /// <summary>Ops compiled by the last <see cref="Compile"/> (the rest run interpreted).</summary>
    public int CompiledOps { get; private set; }

    // The block being emitted (a region's blocks are emitted one after another: SetBlock).
    private Block* _b;
    private Op* _ops;
    private Op[] _snap;
    private int _cur;
    private readonly List<RegionBlock> _region = new();
    private LocalBuilder? _limit;       // in-region edges stop there: TierHelpers.Limit
    private LocalBuilder? _link;        // the vCPU's link: in-region edges poll its requests
    private IlWriter _il = null!;
    private readonly System.Text.StringBuilder? _listing;
    private readonly LocalBuilder?[] _r = new LocalBuilder?[16];
    private LocalBuilder _va = null!, _e = null!, _v = null!, _tlbR = null!, _tlbW = null!, _cpl = null!;
    private LocalBuilder _fRes = null!, _fDst = null!, _fSrc = null!, _fAux = null!;
    // Scratch shared by every op (one local each: the JIT tracks a bounded number of locals).
    private LocalBuilder _d = null!, _x = null!, _cf = null!, _cin = null!, _hp = null!;
    // With region edges: the retired count in a local (stored back on every path out, SpillAtSite),
    // and the count an edge would make, while it checks the chain limit.
    private LocalBuilder? _retired, _retNext;
    // Shared tails (SharedTails): where a site jumps, and what it leaves for the tail.
    private LocalBuilder _siteOp = null!, _siteBlock = null!, _siteH = null!, _site = null!, _n = null!;
    private Label _handOverTail, _readTail, _chainTail;
    private bool _handOverUsed, _chainUsed;
    private readonly List<Label> _readReturns = new();
    private readonly List<Action> _outOfLine = new();
    private bool[] _written = new bool[16];   // registers written so far on the path being emitted (only those are stored back)
    private bool _edges;                // the region has edges between its blocks (EmitEdge)

    // The lazy flags at the point being emitted: 0 = the CpuState holds them; else
    // Flags kind << 2 | size log, with the values in _fRes/_fDst/_fSrc.
    private int _pending;

    private BlockCompiler(Block* b, Op[] snapshot, System.Text.StringBuilder? listing = null)
    {
        _listing = listing;
        _b = b;
        _ops = Block.OpsOf(b);
        _snap = snapshot;
        _region.Add(new RegionBlock(b, snapshot, Volatile.Read(ref b->Seq), PrefixLength(snapshot)));
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

    /// <summary>
    /// Emits the block, and with a <paramref name="cache"/> the region of its hot successors
    /// (Region.cs); null when its first op is not compilable.
    /// </summary>
    public static DynamicMethod? Compile(Block* b, Op[] snapshot, CodeCache? cache, out int compiledOps, out List<nint> members)
    {
        var c = new BlockCompiler(b, snapshot);
        if (cache != null) c.GrowRegion(cache);
        var m = c.Emit();
        compiledOps = c.CompiledOps;
        members = c._region.Skip(1).Select(r => (nint)r.B).ToList();
        return m;
    }

    /// <summary>The IL the compiler emits for the block (and its region, given a cache), as text (null when nothing compiles).</summary>
    public static string? Listing(Block* b, Op[] snapshot, CodeCache? cache = null)
    {
        var text = new System.Text.StringBuilder();
        var c = new BlockCompiler(b, snapshot, text);
        if (cache != null) c.GrowRegion(cache);
        return c.Emit() == null ? null : text.ToString();
    }

    private DynamicMethod? Emit()
    {
        int n = _region[0].N;
        if (n == 0) { CompiledOps = 0; return null; }
        CompiledOps = _region.Sum(r => r.N);
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
        _d = _il.DeclareLocal(typeof(ulong));
        _x = _il.DeclareLocal(typeof(ulong));
        _cf = _il.DeclareLocal(typeof(int));
        _cin = _il.DeclareLocal(typeof(ulong));
        _hp = _il.DeclareLocal(typeof(nint));
        _siteOp = _il.DeclareLocal(typeof(nint));
        _siteBlock = _il.DeclareLocal(typeof(nint));
        _siteH = _il.DeclareLocal(typeof(nint));
        _site = _il.DeclareLocal(typeof(int));
        _n = _il.DeclareLocal(typeof(int));
        _handOverTail = _il.DefineLabel();
        _readTail = _il.DefineLabel();
        _chainTail = _il.DefineLabel();
        for (int k = 0; k < _region.Count; k++) _region[k] = _region[k].WithLabel(_il.DefineLabel());

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
        for (int k = 0; k < _region.Count; k++)
        {
            SetBlock(k);
            for (int i = 0; i < _region[k].N; i++) CollectRegs(i);
        }
        SetBlock(0);
        for (int r = 0; r < 16; r++)
            if (_r[r] != null) { LoadField(StateLayout.Regs + 8 * r); _il.Emit(OpCodes.Stloc, _r[r]!); }
        LoadPtrField(StateLayout.TlbRead, _tlbR);
        LoadPtrField(StateLayout.TlbWrite, _tlbW);
        LoadField(StateLayout.TlbCplBit);
        _il.Emit(OpCodes.Stloc, _cpl);
        if (HasRegionEdges())
        {
            _edges = true;
            _limit = _il.DeclareLocal(typeof(long));
            _retired = _il.DeclareLocal(typeof(long));
            _retNext = _il.DeclareLocal(typeof(long));
            LoadField(StateLayout.Retired);
            _il.Emit(OpCodes.Stloc, _retired);
            // At most RegionBudget instructions past the run loop's entry, never past the
            // instruction limit (TierHelpers.Limit); the run loop, reached after that, acknowledges
            // code-cache grace periods. Link requests are polled at every edge (EmitEdge).
            _link = _il.DeclareLocal(typeof(ToyVmm.Mmu.Secondary.VcpuLink));
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Call, LinkOfM);
            _il.Emit(OpCodes.Stloc, _link);
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Call, LimitM);
            _il.Emit(OpCodes.Stloc, _limit);
            // Once an in-region edge has been taken, a register written anywhere in the region
            // may differ from the CpuState at any point: every exit stores them all.
            for (int r = 0; r < 16; r++) _written[r] = _r[r] != null;
        }

        for (int k = 0; k < _region.Count; k++)
        {
            SetBlock(k);
            _il.MarkLabel(_region[k].Label);
            _pending = 0;   // an in-region edge stores the lazy flags before it branches
            bool ended = false;
            int nk = _region[k].N;
            for (int i = 0; i < nk && !ended; i++) ended = EmitOp(i);
            if (!ended) HandOver(nk, _pending);
        }
        foreach (var a in _outOfLine) a();
        SharedTails();
        return m;
    }

    private void CollectRegs(int i)
    {
        var info = Info(i);
        ref Op op = ref _snap[i];
        void Use(int r) { if (r < 16) _r[r] ??= _il.DeclareLocal(typeof(ulong)); }
        void UseSized(int r, int log) => Use(log == 0 ? r >> 3 : r);
        if (UsesMemory(info)) { Use(op.B); Use(op.I); }
        bool reg = info.Form is CForm.RR or CForm.RI or CForm.RM;   // a register operand in R
        switch (info.Kind)
        {
            case CKind.MovRR: UseSized(op.R, info.Log); UseSized(op.R2, info.Log); break;
            case CKind.Imul: UseSized(op.R, info.Log); if (info.Form == CForm.RR) UseSized(op.R2, info.Log); break;
            case CKind.SxR: case CKind.ZxR: UseSized(op.R, info.Log); UseSized(op.R2, info.SrcLog); break;
            case CKind.Alu: UseSized(op.R, info.Log); if (info.Form == CForm.RR) UseSized(op.R2, info.Log); break;
            case CKind.Cmov: UseSized(op.R, info.Log); if (info.Form == CForm.RR) UseSized(op.R2, info.Log); break;
            case CKind.MovRI: case CKind.MovRI64: case CKind.MovRM: case CKind.MovMR: case CKind.Lea: case CKind.ZxM: case CKind.SxM:
            case CKind.Shift:
                UseSized(op.R, info.Log); break;
            case CKind.Not: case CKind.Neg: case CKind.Inc: case CKind.Dec: case CKind.Set:
                if (reg) UseSized(op.R, info.Log);
                break;
            case CKind.Call: case CKind.Ret: Use(4); break;
            case CKind.Push: case CKind.Pop: Use(4); Use(op.R); break;
            case CKind.Cdqe: Use(0); break;
            case CKind.Cdq: case CKind.Cqo: Use(0); Use(2); break;
            case CKind.SseV2: if (op.Y == 1) { Use(op.B); Use(op.I); } break;
            case CKind.SseLoad: case CKind.SseStore: Use(op.B); Use(op.I); break;
            case CKind.GprToXmm: case CKind.XmmToGpr: Use(op.R2); break;
            case CKind.Div: Use(0); Use(2); if (op.Y == 0) Use(op.R2); else { Use(op.B); Use(op.I); } break;
        }
    }

    /// <summary>Whether the op has a memory operand (B, I, Scale, Disp, Seg).</summary>
    private static bool UsesMemory(in OpInfo info) => info.Kind switch
    {
        CKind.MovRM or CKind.MovMR or CKind.MovMI or CKind.Lea or CKind.ZxM or CKind.SxM => true,
        CKind.Alu => info.Form is CForm.RM or CForm.MR or CForm.MI,
        CKind.Imul or CKind.Cmov => info.Form == CForm.RM,
        CKind.Not or CKind.Neg or CKind.Inc or CKind.Dec or CKind.Set => info.Form == CForm.MI,
        _ => false,
    };

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

    private void Bump(string name, long n)
    {
        if (!TierProfile.On) return;
        PushPtr((nint)TierProfile.Slot(name));
        _il.Emit(OpCodes.Dup);
        _il.Emit(OpCodes.Ldind_I8);
        _il.Emit(OpCodes.Ldc_I8, n);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stind_I8);
    }

    private void PushPtr(nint p)
    {
        _il.Emit(OpCodes.Ldc_I8, (long)p);
        _il.Emit(OpCodes.Conv_I);
    }

    /// <summary>
    /// CurOp = op <paramref name="i"/> of the block being emitted (-1: null). In a region of
    /// several blocks CurBlock and BlockVa name that block first (the run loop, Exec.Chain and a
    /// fault read the op against them; the order is the one Exec.Chain keeps for the shootdown).
    /// </summary>
    private void StoreCurOp(int i)
    {
        if (i >= 0 && _region.Count > 1)
        {
            _il.Emit(OpCodes.Ldarg_0);
            _il.Emit(OpCodes.Ldc_I4, StateLayout.CurBlock);
            _il.Emit(OpCodes.Add);
            PushPtr((nint)_b);
            _il.Emit(OpCodes.Stind_I);
            StoreField(StateLayout.BlockVa, () => _il.Emit(OpCodes.Ldc_I8, (long)_b->Va));
        }
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.CurOp);
        _il.Emit(OpCodes.Add);
        if (i < 0) { _il.Emit(OpCodes.Ldc_I4_0); _il.Emit(OpCodes.Conv_U); }
        else PushPtr(OpAddr(i));
        _il.Emit(OpCodes.Stind_I);
    }
}
