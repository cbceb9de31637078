using System.Diagnostics;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu.Tier;

/// <summary>The handler signature as a delegate: how the compiler thread calls a compiled block once to have it JIT-compiled.</summary>
internal unsafe delegate Op* CompiledBlock(CpuState* s, Op* op);

/// <summary>
/// Tier 0 to tier 1: the counting entry every block starts with when tiered, and the compiler
/// thread that turns a hot block into a <see cref="DynamicMethod"/> and swaps it into op 0.
/// </summary>
internal static unsafe class TierEntry
{
    /// <summary>The single counting entry stored into op 0 (compared as an address on install).</summary>
    public static readonly delegate*<CpuState*, Op*, Op*> CountHandler = &Count;

    /// <summary>
    /// Op 0 of a counted block: count the entry (racy across vCPUs; only a trigger), ask for the
    /// block to be compiled once at the threshold, and run op 0's own handler meanwhile.
    /// </summary>
    public static Op* Count(CpuState* s, Op* op)
    {
        Block* b = (Block*)((byte*)op - Block.HeaderSize);
        if (++b->Hits >= b->HitLimit && b->TierState == 0) return Request(s, b, op);
        return b->Entry0(s, op);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Op* Request(CpuState* s, Block* b, Op* op)
    {
        if (Interlocked.CompareExchange(ref b->TierState, 1, 0) != 0) return b->Entry0(s, op);
        var cache = Vcpu.Of(s).Code;
        int seq = Volatile.Read(ref b->Seq);
        if (b->HitLimit > 0 && !cache.TierSynchronous)
        {
            TierCompiler.Enqueue(cache, b, seq);
            return b->Entry0(s, op);
        }
        // Threshold 0 (or a synchronous cache): compile now, on this thread, then enter op 0 as it is now (the compiled
        // code, op 0's own handler when declined, or the bail-out when invalidated meanwhile).
        TierCompiler.CompileOne(cache, b, seq);
        return op->H(s, op);
    }
}

/// <summary>
/// The background compiler: one thread for the process, fed by <see cref="TierEntry"/>. It
/// takes the hottest waiting block first (the most instructions run now, not when it was asked for), so
/// a hot loop that reaches the threshold behind a queue of lukewarm blocks is compiled next,
/// not after them: on a short run the JIT's time is spent while the guest still runs
/// interpreted, and the order decides how much of the run the compiled code gets.
/// </summary>
internal static unsafe class TierCompiler
{
    /// <summary>Whether blocks are compiled with their regions (TOYVMM_NO_REGIONS=1 compiles single blocks, for measurements).</summary>
    public static readonly bool Regions = Environment.GetEnvironmentVariable("TOYVMM_NO_REGIONS") != "1";

    /// <summary>
    /// A waiting block that has not been entered for this long leaves the queue and may ask
    /// again (its <c>TierState</c> goes back to 0): the queue holds the blocks that run now,
    /// and a finished VM's blocks do not take the compiler's time from a running one.
    /// </summary>
    public static readonly long StaleTicks = Stopwatch.Frequency / 50;   // 20 ms

    /// <summary>
    /// A waiting block is compiled once its entries times its instructions reach its threshold
    /// times this many: a block shorter than this waits proportionally more entries. The JIT's
    /// cost per method is mostly fixed (a few hundred microseconds even for two instructions),
    /// and only instructions run compiled, not entries, pay it back.
    /// </summary>
    public const int WorthOps = 16;

    private sealed class Waiting(CodeCache cache, nint block, int seq, int hits, long since)
    {
        public CodeCache Cache = cache;
        public nint Block = block;
        public int Seq = seq;
        public int Hits = hits;         // entries when last looked at
        public long Since = since;      // when Hits last changed
        public long Queued = since;     // when it was asked for (the profile's timeline)
    }

    private static readonly List<Waiting> Queue = new();   // guarded by Queue
    private static int _started;

    public static void Enqueue(CodeCache cache, Block* b, int seq)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            var t = new Thread(Loop) { IsBackground = true, Name = "toyvmm-tier-compiler", Priority = ThreadPriority.BelowNormal };
            t.Start();
        }
        lock (Queue)
        {
            Queue.Add(new Waiting(cache, (nint)b, seq, b->Hits, Stopwatch.GetTimestamp()));
            Monitor.Pulse(Queue);
        }
    }

    private static void Loop()
    {
        while (true)
        {
            Waiting? next;
            lock (Queue)
            {
                while (Queue.Count == 0) Monitor.Wait(Queue);
                next = TakeHottestLocked();
                // None is worth its JIT time yet: look again when more entries have been counted.
                if (next == null) Monitor.Wait(Queue, 2);
            }
            if (next == null) continue;
            if (TierProfile.On)
                lock (TierProfile.Timeline)
                    TierProfile.Timeline.Add($"{(next.Queued - TierProfile.MarkTicks - TierProfile.ClockStart) * 1000.0 / Stopwatch.Frequency,8:F1} ms  queued {((Block*)next.Block)->Va:x}, taken after {(Stopwatch.GetTimestamp() - next.Queued) * 1000.0 / Stopwatch.Frequency:F1} ms");
            CompileOne(next.Cache, (Block*)next.Block, next.Seq);
        }
    }

    /// <summary>
    /// Removes and returns the waiting block that has run the most instructions (entries times
    /// its ops: a two-instruction block entered as often as a twenty-instruction one has run a
    /// tenth of its work) among those worth compiling now (<see cref="WorthOps"/>); drops the ones not entered for <see cref="StaleTicks"/>
    /// (they may ask again). Null when none is worth it yet.
    /// </summary>
    /// <remarks>
    /// Hits are read racily from the block header: a queued block's cache is alive (the entry
    /// holds it, and its chunks stay mapped for its life), so the read never faults; a slot
    /// reused meanwhile only misorders the queue, and <see cref="CompileOne"/> checks the slot.
    /// </remarks>
    private static Waiting? TakeHottestLocked()
    {
        Debug.Assert(Monitor.IsEntered(Queue));
        long now = Stopwatch.GetTimestamp();
        int best = -1;
        long bestWork = 0;
        for (int i = Queue.Count - 1; i >= 0; i--)
        {
            var w = Queue[i];
            int hits = Volatile.Read(ref ((Block*)w.Block)->Hits);
            if (hits != w.Hits) { w.Hits = hits; w.Since = now; }
            else if (now - w.Since > StaleTicks)
            {
                w.Cache.TierRequeue((Block*)w.Block, w.Seq);
                Queue.RemoveAt(i);
                if (best > i) best--;
                continue;
            }
            var b = (Block*)w.Block;
            long work = (long)hits * Math.Max(1, (int)b->NumOps);
            if (work < (long)b->HitLimit * WorthOps) continue;
            if (best < 0 || work > bestWork) { best = i; bestWork = work; }
        }
        if (best < 0) return null;
        var hot = Queue[best];
        Queue[best] = Queue[^1];
        Queue.RemoveAt(Queue.Count - 1);
        return hot;
    }

    /// <summary>Compiles the block if it is still the one counted (slot sequence <paramref name="seq"/>) and swaps the code in.</summary>
    public static void CompileOne(CodeCache cache, Block* b, int seq)
    {
        Op[]? ops = cache.TierSnapshot(b, seq);
        if (ops == null) return;
        bool member = Regions && cache.TierInRegion(b);
        // A member of another region, at a threshold above 0: compiled alone only if entered
        // often from outside that region too (the JIT's time goes to blocks that need it).
        if (member && b->HitLimit > 0 && cache.TierRecount(b, seq)) return;
        long t0 = TierProfile.On ? TierProfile.ThreadCpu() : 0;
        DynamicMethod? m = BlockCompiler.Compile(b, ops, Regions && !member ? cache : null, out int compiled, out var members);
        long t1 = TierProfile.On ? TierProfile.ThreadCpu() : 0;
        if (m == null)
        {
            cache.TierDecline(b, seq);
            return;
        }
        var del = (CompiledBlock)m.CreateDelegate(typeof(CompiledBlock));
        del(null, null);   // JIT-compiles it here, off the vCPU thread when this is the compiler thread
        long t2 = TierProfile.On ? TierProfile.ThreadCpu() : 0;
        bool ok = cache.TierInstall(b, seq, m, del, EntryPoint(m), compiled, members);
        if (TierProfile.On)
        {
            // Thread CPU time of the emit and of the JIT, the method's IL size, a timeline line.
            TierProfile.EmitTicks += t1 - t0; TierProfile.CompileTicks += t2 - t1; TierProfile.Methods++;
            int il = m.GetILGenerator().ILOffset; TierProfile.IlBytes += il;
            TierProfile.Timeline.Add($"{(TierProfile.Clock.ElapsedTicks - TierProfile.MarkTicks) * 1000.0 / Stopwatch.Frequency,8:F1} ms  va {b->Va:x} hits {b->Hits} ops {compiled} blocks {members.Count + 1} [{string.Join(" ", members.Select(x => ((Block*)x)->Va.ToString("x")))}]{(member ? " member" : "")} IL {il} jit {(t2 - t1) * 1000.0 / Stopwatch.Frequency:F2} ms {(ok ? "" : "NOT INSTALLED")}");
        }
    }

    // DynamicMethod keeps its runtime handle internal (ldftn refuses dynamic methods); the
    // handle's function pointer is the method's callable entry point, as for any method.
    private static readonly System.Reflection.MethodInfo GetDescriptor =
        typeof(DynamicMethod).GetMethod("GetMethodDescriptor", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)
        ?? throw new InvalidOperationException("DynamicMethod.GetMethodDescriptor not found");

    /// <summary>The entry point of a dynamic method as a handler pointer.</summary>
    private static nint EntryPoint(DynamicMethod m) =>
        ((RuntimeMethodHandle)GetDescriptor.Invoke(m, null)!).GetFunctionPointer();
}
