using System.Reflection.Emit;

namespace ToyVmm.Cpu.Tier;

/// <summary>One block of a compiled region: its ops as snapshotted, its slot sequence then, its compilable prefix.</summary>
internal readonly unsafe struct RegionBlock(Block* b, Op[] snap, int seq, int n, Label label = default)
{
    public Block* B { get; } = b;
    public Op[] Snap { get; } = snap;
    public int Seq { get; } = seq;
    public int N { get; } = n;
    public Label Label { get; } = label;

    public RegionBlock WithLabel(Label l) => new(B, Snap, Seq, N, l);
}

// Regions: a hot block compiled together with the decoded blocks its direct branches reach on
// the same page, so a loop spanning several blocks runs inside one method with the guest
// registers in host registers. Every in-region edge keeps the checks of a block boundary.
internal sealed unsafe partial class BlockCompiler
{
    /// <summary>Blocks at most in one region (the entry block included).</summary>
    public const int MaxRegionBlocks = 12;

    /// <summary>Ops at most in one region: bounds the IL and the JIT's time per method.</summary>
    public const int MaxRegionOps = 160;


    /// <summary>
    /// Adds the blocks reachable from the entry block through direct jumps, jcc (both ways) and
    /// direct calls, breadth first, while they are decoded, live and hot, start on the entry block's
    /// virtual page (so they are reached under the translation the entry block was found
    /// under, at the same guest-physical page), and their first op compiles; a block with
    /// compiled code of its own only when it is in a loop with the entry block (KeepLoopsOnly).
    /// </summary>
    private void GrowRegion(CodeCache cache)
    {
        ulong page = _region[0].B->Va & ~0xFFFUL, gpaPage = _region[0].B->Gpa & ~0xFFFUL;
        int ops = _region[0].N;
        var ownCode = new HashSet<ulong>();   // region blocks with compiled code of their own
        for (int k = 0; k < _region.Count && _region.Count < MaxRegionBlocks; k++)
        {
            foreach (ulong t in Successors(_region[k]))
            {
                if ((t & ~0xFFFUL) != page || RegionIndex(t) >= 0) continue;
                Op[]? snap = cache.TierSnapshotAt(gpaPage | (t & 0xFFF), t, out Block* b, out int seq);
                // Along hot edges only: a successor entered at least an eighth as often as the
                // threshold asks (the blocks of an enclosing loop, entered once per round of the
                // inner one: each edge left out is a chain between methods per round), or already
                // asked to compile (its own entries stop counting then).
                if (snap == null || (b->TierState == 0 && b->Hits < _region[0].B->HitLimit / 8)) continue;
                int n = PrefixLength(snap);
                if (n == 0 || ops + n > MaxRegionOps) continue;
                ops += n;
                if (cache.TierCompiled(b)) ownCode.Add(b->Va);
                _region.Add(new RegionBlock(b, snap, seq, n));
                if (_region.Count == MaxRegionBlocks) break;
            }
        }
        if (ownCode.Count > 0) KeepLoopsOnly(ownCode);
    }

    /// <summary>
    /// A block with compiled code of its own stays in the region only if it leads back to the
    /// entry block through region blocks (it is in a loop with it): a loop whose blocks were
    /// compiled at different times then still runs inside one method, instead of a chain
    /// between methods every round. Any other is reached through the chain, not copied: a run of
    /// blocks entered one after another from outside (the return sites of a sequence of calls)
    /// would otherwise each head a region holding all the blocks after it, and the JIT's time
    /// would grow with the square of the run. Blocks no longer reached from the entry block go too.
    /// </summary>
    private void KeepLoopsOnly(HashSet<ulong> ownCode)
    {
        int count = _region.Count;
        var toEntry = new bool[count];
        toEntry[0] = true;
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int k = 1; k < count; k++)
                if (!toEntry[k] && Successors(_region[k]).Any(t => RegionIndex(t) is int j && j >= 0 && toEntry[j]))
                    changed = toEntry[k] = true;
        }
        var keep = new bool[count];
        for (int k = 0; k < count; k++) keep[k] = toEntry[k] || !ownCode.Contains(_region[k].B->Va);
        // Reached from the entry block through kept blocks only.
        var reached = new bool[count];
        var work = new Queue<int>();
        reached[0] = true;
        work.Enqueue(0);
        while (work.Count > 0)
            foreach (ulong t in Successors(_region[work.Dequeue()]))
                if (RegionIndex(t) is int j && j >= 0 && keep[j] && !reached[j]) { reached[j] = true; work.Enqueue(j); }
        var kept = _region.Where((_, k) => reached[k]).ToList();
        _region.Clear();
        _region.AddRange(kept);
    }

    /// <summary>Direct successors of a region block's compiled prefix (none when it ends by handing over).</summary>
    private static List<ulong> Successors(RegionBlock r)
    {
        var to = new List<ulong>(2);
        if (r.N == 0) return to;
        Op last = r.Snap[r.N - 1];
        HandlerTable.TryGet((nint)last.H, out var info);
        if (info.Kind is CKind.Jcc or CKind.Jmp or CKind.Call) to.Add((ulong)last.Disp);
        // jcc not taken; and after a call, its return site (reached by a ret: see ReturnSites)
        if (info.Kind is CKind.Jcc or CKind.Call) to.Add(r.B->Va + last.RipOff + last.Len);
        return to;
    }

    /// <summary>Region blocks that start right after a call of the region: where a ret of the region most likely goes.</summary>
    private List<ulong> ReturnSites()
    {
        var sites = new List<ulong>();
        foreach (var r in _region)
        {
            if (r.N == 0) continue;
            Op last = r.Snap[r.N - 1];
            HandlerTable.TryGet((nint)last.H, out var info);
            ulong site = r.B->Va + last.RipOff + last.Len;
            if (info.Kind == CKind.Call && RegionIndex(site) >= 0 && !sites.Contains(site)) sites.Add(site);
        }
        return sites;
    }

    /// <summary>The region index of the block starting at <paramref name="va"/>, or -1.</summary>
    private int RegionIndex(ulong va)
    {
        for (int k = 0; k < _region.Count; k++)
            if (_region[k].B->Va == va) return k;
        return -1;
    }

    private bool HasRegionEdges()
    {
        foreach (var r in _region)
            foreach (ulong t in Successors(r))
                if (RegionIndex(t) >= 0) return true;
        return false;
    }

    /// <summary>
    /// A ret of op <paramref name="i"/> whose popped address (in _v) is a return site in the region
    /// goes there inside the compiled code (EmitEdge's checks); any other address leaves.
    /// </summary>
    private void EmitReturnEdges(int i)
    {
        foreach (ulong site in ReturnSites())
        {
            var next = _il.DefineLabel();
            _il.Emit(OpCodes.Ldloc, _v);
            _il.Emit(OpCodes.Ldc_I8, (long)site);
            _il.Emit(OpCodes.Bne_Un, next);
            EmitEdge(i, site);
            _il.MarkLabel(next);
        }
    }

    /// <summary>
    /// Whether region block <paramref name="k"/> replaces the lazy flags before anything can
    /// observe them: its compiled prefix reaches an op that sets every flag from its operands
    /// alone (a register add/sub/and/or/xor/cmp/test, neg, imul or shift by an immediate) through
    /// ops that neither read the flags nor can leave the compiled code (no memory access, no
    /// hand-over, no block end, where a fault, the interpreter or the next block would read
    /// them). An edge into such a block need not store the flags it holds: they are dead.
    /// </summary>
    private bool FlagsDeadAt(int k)
    {
        var r = _region[k];
        for (int i = 0; i < r.N; i++)
        {
            HandlerTable.TryGet((nint)r.Snap[i].H, out var info);
            bool register = info.Form != CForm.MI;
            switch (info.Kind)
            {
                case CKind.MovRR: case CKind.MovRI: case CKind.MovRI64: case CKind.Lea: case CKind.ZxR: case CKind.SxR:
                case CKind.Cdqe: case CKind.Cdq: case CKind.Cqo: case CKind.Nop:
                    continue;
                case CKind.Not when register:
                    continue;
                case CKind.Alu when info.Form is CForm.RR or CForm.RI && info.Alu is not (CAlu.Adc or CAlu.Sbb):
                case CKind.Neg when register:
                case CKind.Imul when info.Form == CForm.RR:
                case CKind.Shift:
                    return true;
                default:
                    return false;
            }
        }
        return false;
    }

    /// <summary>Emits the ops of region block <paramref name="k"/> from now on.</summary>
    private void SetBlock(int k)
    {
        _cur = k;
        _b = _region[k].B;
        _ops = Block.OpsOf(_b);
        _snap = _region[k].Snap;
    }

    /// <summary>Out-of-line code is emitted after every block: it runs with the block it was asked for.</summary>
    private void AddOutOfLine(Action emit)
    {
        int k = _cur;
        _outOfLine.Add(() => { SetBlock(k); emit(); });
    }

    /// <summary>
    /// The transfer of op <paramref name="i"/> to <paramref name="target"/>, taken: when the target
    /// is a region block, go there inside the compiled code, registers staying in locals, if
    /// the region may go on: within its own limit (the instruction limit, and RegionBudget
    /// instructions per entry), no exit reason, no link request pending (a flush is taken at the
    /// next edge: the run loop, reached through the exit, services it), the block still valid
    /// in the same slot. The finished
    /// block is counted as retired (in a local, stored on every path out) and the lazy flags stored (every region block
    /// starts with the flags in the CpuState) unless the target replaces them before anything
    /// can read them (<see cref="FlagsDeadAt"/>). Otherwise fall through to the ordinary exit, which
    /// chains or returns to the run loop.
    /// </summary>
    private void EmitEdge(int i, ulong target)
    {
        int k = RegionIndex(target);
        if (k < 0 || !_edges) return;
        var exit = _il.DefineLabel();
        var retired = _retNext!;
        _il.Emit(OpCodes.Ldloc, _retired!);
        _il.Emit(OpCodes.Ldc_I8, (long)(i + 1));
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Stloc, retired);
        _il.Emit(OpCodes.Ldloc, retired);
        _il.Emit(OpCodes.Ldloc, _limit!);
        _il.Emit(OpCodes.Bge, exit);
        _il.Emit(OpCodes.Ldarg_0);
        _il.Emit(OpCodes.Ldc_I4, StateLayout.ExitReason);
        _il.Emit(OpCodes.Add);
        _il.Emit(OpCodes.Ldind_I4);
        _il.Emit(OpCodes.Brtrue, exit);
        _il.Emit(OpCodes.Ldloc, _link!);
        _il.Emit(OpCodes.Callvirt, HasRequestsM);
        _il.Emit(OpCodes.Brtrue, exit);
        // Valid before Seq: a reused slot changes Seq before its new block becomes valid.
        Block* b = _region[k].B;
        PushPtr((nint)b + StateLayout.BlockValid);
        _il.Emit(OpCodes.Volatile);
        _il.Emit(OpCodes.Ldind_I4);
        _il.Emit(OpCodes.Brfalse, exit);
        // The entry block's slot cannot have been reused: this vCPU entered it through its op 0
        // and has passed no block boundary since, which a reuse waits for (CodeCache.Reclaim.cs).
        if (k != 0)
        {
            PushPtr((nint)b + StateLayout.BlockSeq);
            _il.Emit(OpCodes.Volatile);
            _il.Emit(OpCodes.Ldind_I4);
            _il.Emit(OpCodes.Ldc_I4, _region[k].Seq);
            _il.Emit(OpCodes.Bne_Un, exit);
        }
        _il.Emit(OpCodes.Ldloc, retired);
        _il.Emit(OpCodes.Stloc, _retired!);
        if (!FlagsDeadAt(k)) SpillFlags(_pending);
        Bump("in-region edge", 1); Bump("insns compiled", i + 1);
        _il.Emit(OpCodes.Br, _region[k].Label);
        _il.MarkLabel(exit);
    }
}
