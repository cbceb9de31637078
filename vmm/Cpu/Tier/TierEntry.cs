using System.Collections.Concurrent;
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

/// <summary>The background compiler: one thread for the process, fed by <see cref="TierEntry"/>.</summary>
internal static unsafe class TierCompiler
{
    /// <summary>Whether blocks are compiled with their regions (TOYVMM_NO_REGIONS=1 compiles single blocks, for measurements).</summary>
    public static readonly bool Regions = Environment.GetEnvironmentVariable("TOYVMM_NO_REGIONS") != "1";

    private static readonly BlockingCollection<(CodeCache Cache, nint Block, int Seq)> Queue = new();
    private static int _started;

    public static void Enqueue(CodeCache cache, Block* b, int seq)
    {
        if (Interlocked.Exchange(ref _started, 1) == 0)
        {
            var t = new Thread(Loop) { IsBackground = true, Name = "toyvmm-tier-compiler", Priority = ThreadPriority.BelowNormal };
            t.Start();
        }
        Queue.Add((cache, (nint)b, seq));
    }

    private static void Loop()
    {
        foreach (var (cache, b, seq) in Queue.GetConsumingEnumerable())
            CompileOne(cache, (Block*)b, seq);
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
        DynamicMethod? m = BlockCompiler.Compile(b, ops, Regions && !member ? cache : null, out int compiled, out var members);
        if (m == null)
        {
            cache.TierDecline(b, seq);
            return;
        }
        var del = (CompiledBlock)m.CreateDelegate(typeof(CompiledBlock));
        del(null, null);   // JIT-compiles it here, off the vCPU thread when this is the compiler thread
        cache.TierInstall(b, seq, m, del, EntryPoint(m), compiled, members);
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
