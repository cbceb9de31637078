using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>A vCPU TLB whose answers the test sets; records what the invalidator did to it.</summary>
internal sealed class ScriptedTlb : IVcpuTlb
{
    public volatile bool Holds = true, Quiescent, MapsAnswer;
    public readonly List<(ulong, ulong)> ShotDown = new();
    /// <summary>How often the invalidator asked the filter (<see cref="MayHold"/>).</summary>
    public long MayHoldCalls;
    /// <summary>Runs on the invalidator's thread each time it shoots this TLB down (after recording it).</summary>
    public Action? OnShootDown;
    public bool MayHold(ulong firstGfn, ulong lastGfn) { Interlocked.Increment(ref MayHoldCalls); return Holds; }
    public void ShootDown(ulong firstGfn, ulong lastGfn)
    {
        lock (ShotDown) ShotDown.Add((firstGfn, lastGfn));
        OnShootDown?.Invoke();
    }
    public bool IsQuiescent => Quiescent;
    /// <summary>What <see cref="Progress"/> answers: -1 (cannot tell) unless the test sets a counter.</summary>
    public long ProgressValue = -1;
    public long Progress { get { Interlocked.Increment(ref ProgressReads); return Interlocked.Read(ref ProgressValue); } }
    /// <summary>How often the invalidator read <see cref="Progress"/> (once when it posts; again at each look of its spin).</summary>
    public long ProgressReads;
    public bool Maps(ulong gfn, nint hostPage) => MapsAnswer;
}
