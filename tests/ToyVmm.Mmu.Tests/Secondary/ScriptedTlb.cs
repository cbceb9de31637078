using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Tests.Secondary;

/// <summary>A vCPU TLB whose answers the test sets; records what the invalidator did to it.</summary>
internal sealed class ScriptedTlb : IVcpuTlb
{
    public volatile bool Holds = true, Quiescent, MapsAnswer;
    public readonly List<(ulong, ulong)> ShotDown = new();
    public bool MayHold(ulong firstGfn, ulong lastGfn) => Holds;
    public void ShootDown(ulong firstGfn, ulong lastGfn) { lock (ShotDown) ShotDown.Add((firstGfn, lastGfn)); }
    public bool IsQuiescent => Quiescent;
    /// <summary>What <see cref="Progress"/> answers: -1 (cannot tell) unless the test sets a counter.</summary>
    public long ProgressValue = -1;
    public long Progress => Interlocked.Read(ref ProgressValue);
    public bool Maps(ulong gfn, nint hostPage) => MapsAnswer;
}
