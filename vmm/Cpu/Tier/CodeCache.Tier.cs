using System.Diagnostics;
using System.Reflection.Emit;

namespace ToyVmm.Cpu;

// The translation tier's side of the code cache: which blocks are counted, swapping compiled
// code into op 0, and holding each compiled method exactly as long as its slot (Tier/).
//
//   publish (under _lock)           tiered: Entry0 = op 0's handler, op 0 = TierEntry.Count
//   Count reaches HitLimit          TierState 0 -> 1 (once), compile queued (or done now at 0)
//   compiler thread                 snapshot the ops under _lock (Valid and Seq unchanged)
//                                   emit + JIT outside the lock
//   install (under _lock)           still Valid, same Seq, op 0 still Count: op 0 = compiled
//   retire (under _lock)            every op, op 0 too, becomes the bail-out: no new entry
//   slot freed (grace period over)  the compiled method is dropped: no vCPU can be inside it
//
// A vCPU inside compiled code is inside its block (it passed no block boundary), so the grace
// period that frees the slot also ends every use of the code; the method object is kept in
// _compiled until then, and the JIT frees its code when the object is collected.
internal sealed unsafe partial class CodeCache
{
    private int _tierThreshold = DefaultTierThreshold;                  // guarded by _lock; -1: interpreter only

    /// <summary>
    /// The threshold of a cache nobody configured: -1, or TOYVMM_TIER_DEFAULT when set (so a
    /// whole test suite can run compiled: TOYVMM_TIER_DEFAULT=0). The CLI always sets it.
    /// </summary>
    public static readonly int DefaultTierThreshold =
        int.TryParse(Environment.GetEnvironmentVariable("TOYVMM_TIER_DEFAULT"), out int t) && t >= -1 ? t : -1;
    private readonly Dictionary<nint, object> _compiled = new();        // guarded by _lock; block -> its DynamicMethod and delegate
    private readonly HashSet<nint> _regionMembers = new();              // guarded by _lock; blocks compiled into another block's region
    private readonly HashSet<nint> _recounted = new();                  // guarded by _lock; region members whose entries were counted afresh
    private long _regionBlocks;                                          // guarded by _lock
    private long _blocksCompiled, _opsCompiled, _compileDeclined, _compiledFreed;   // guarded by _lock

    /// <summary>
    /// The translation tier: -1 interprets only; 0 compiles every block on the vCPU thread at its
    /// first execution (deterministic, for tests); N &gt; 0 compiles a block on the background
    /// compiler thread once it has been entered N times. Blocks published from now on follow it.
    /// </summary>
    public int TierThreshold
    {
        get { lock (_lock) return _tierThreshold; }
        set { lock (_lock) _tierThreshold = Math.Max(-1, value); }
    }

    /// <summary>A snapshot of the tier counters.</summary>
    public TierStats TierStats
    {
        get { lock (_lock) return new TierStats(_blocksCompiled, _opsCompiled, _compileDeclined, _compiledFreed, _compiled.Count, _regionBlocks); }
    }

    /// <summary>
    /// Compile on the vCPU thread at the threshold, whatever it is (tests: a threshold of 2 then
    /// compiles a loop at its second round, when the blocks of its body are decoded and can join
    /// its region, deterministically). Normally only threshold 0 compiles on the vCPU thread.
    /// </summary>
    public volatile bool TierSynchronous = DefaultTierSynchronous;

    /// <summary>TOYVMM_TIER_SYNC=1: every cache compiles synchronously (with TOYVMM_TIER_DEFAULT=2, the CPU suite runs with regions).</summary>
    public static readonly bool DefaultTierSynchronous = Environment.GetEnvironmentVariable("TOYVMM_TIER_SYNC") == "1";

    /// <summary>Publish, under _lock, before the block is valid: start counting its entries when tiered.</summary>
    private void OnPublishLocked(Block* b)
    {
        Debug.Assert(Monitor.IsEntered(_lock));
        b->Hits = 0;
        b->TierState = 0;
        b->HitLimit = _tierThreshold;
        b->Entry0 = null;
        if (_tierThreshold < 0) return;
        Op* op0 = Block.OpsOf(b);
        b->Entry0 = op0->H;
        op0->H = Tier.TierEntry.CountHandler;
    }

    /// <summary>A copy of the ops of a live block (op 0 with its own handler), or null when the slot changed.</summary>
    public Op[]? TierSnapshot(Block* b, int seq)
    {
        lock (_lock)
        {
            if (Volatile.Read(ref b->Valid) == 0 || b->Seq != seq) return null;
            var ops = new Op[b->NumOps];
            Op* src = Block.OpsOf(b);
            for (int i = 0; i < ops.Length; i++) ops[i] = src[i];
            ops[0].H = b->Entry0;
            return ops;
        }
    }

    /// <summary>
    /// The live block at (<paramref name="gpa"/>, <paramref name="va"/>) with a copy of its ops
    /// (op 0 with its own handler) and its slot sequence, for a region; null when there is none.
    /// </summary>
    public Op[]? TierSnapshotAt(ulong gpa, ulong va, out Block* block, out int seq)
    {
        lock (_lock)
        {
            block = null;
            seq = 0;
            if (!_blocks.TryGetValue((gpa, va), out nint p)) return null;
            var b = (Block*)p;
            if (Volatile.Read(ref b->Valid) == 0 || b->Entry0 == null) return null;
            block = b;
            seq = b->Seq;
            return TierSnapshot(b, seq);
        }
    }

    /// <summary>Swaps compiled code into op 0 of a block still counted; false when it changed meanwhile.</summary>
    public bool TierInstall(Block* b, int seq, DynamicMethod method, Delegate keep, nint entry, int ops, IEnumerable<nint> members)
    {
        lock (_lock)
        {
            Op* op0 = Block.OpsOf(b);
            if (Volatile.Read(ref b->Valid) == 0 || b->Seq != seq || (nint)op0->H != (nint)Tier.TierEntry.CountHandler) return false;
            _compiled[(nint)b] = (method, keep);
            foreach (nint m in members) { _regionMembers.Add(m); _regionBlocks++; }
            Volatile.Write(ref *(nint*)&op0->H, entry);
            _blocksCompiled++;
            _opsCompiled += ops;
            return true;
        }
    }

    /// <summary>Whether <paramref name="b"/> has compiled code of its own installed in op 0.</summary>
    public bool TierCompiled(Block* b)
    {
        lock (_lock) return _compiled.ContainsKey((nint)b);
    }

    /// <summary>
    /// Whether <paramref name="b"/> already runs inside another block's compiled region: it is then
    /// compiled alone (for entries from elsewhere), not as the head of a region of its own.
    /// </summary>
    public bool TierInRegion(Block* b)
    {
        lock (_lock) return _regionMembers.Contains((nint)b);
    }

    /// <summary>
    /// A block asked to compile that another block's region already runs: count its entries
    /// afresh (true), once, so it is compiled alone only if it keeps being entered from outside
    /// that region (its entries through the region's edges no longer count). False when it was
    /// recounted before (compile it alone now) or the slot changed.
    /// </summary>
    public bool TierRecount(Block* b, int seq)
    {
        lock (_lock)
        {
            if (Volatile.Read(ref b->Valid) == 0 || b->Seq != seq || !_recounted.Add((nint)b)) return false;
            b->Hits = 0;
            Volatile.Write(ref b->TierState, 0);
            return true;
        }
    }

    /// <summary>
    /// A block left the compiler's queue without being compiled (not entered for a while): it
    /// may ask again when it is entered (its entries stay counted, so at its next entry).
    /// </summary>
    public void TierRequeue(Block* b, int seq)
    {
        lock (_lock)
        {
            if (Volatile.Read(ref b->Valid) == 0 || b->Seq != seq) return;
            Volatile.Write(ref b->TierState, 0);
        }
    }

    /// <summary>The block is not compiled (its first op is not compilable): op 0 gets its own handler back.</summary>
    public void TierDecline(Block* b, int seq)
    {
        lock (_lock)
        {
            _compileDeclined++;
            Op* op0 = Block.OpsOf(b);
            if (Volatile.Read(ref b->Valid) == 0 || b->Seq != seq || (nint)op0->H != (nint)Tier.TierEntry.CountHandler) return;
            if (Tier.TierProfile.On) { lock (Tier.TierProfile.Declined) Tier.TierProfile.Declined.Add(((nint)b, b->Va)); return; }
            Volatile.Write(ref *(nint*)&op0->H, (nint)b->Entry0);
        }
    }

    /// <summary>The slot of <paramref name="b"/> is free (grace period over): its compiled method may go.</summary>
    private void OnSlotFreedLocked(Block* b)
    {
        Debug.Assert(Monitor.IsEntered(_lock));
        if (_compiled.Remove((nint)b)) _compiledFreed++;
        _regionMembers.Remove((nint)b);
        _recounted.Remove((nint)b);
    }
}
