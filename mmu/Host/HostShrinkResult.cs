namespace ToyVmm.Mmu.Host;

/// <summary>What a shrink of the host's frame pool (<see cref="HostMemory.Shrink"/>) did.</summary>
/// <param name="RequestedFrames">Frames asked for.</param>
/// <param name="GrantedFrames">Frames that will leave service: the request, clamped so that the host keeps its minimum.</param>
/// <param name="RetiredNow">Of those, free frames retired at once.</param>
/// <param name="Debt">Frames still to retire as reclaim frees them (all shrinks so far).</param>
/// <param name="TargetFrames">Frames in service once the debt is paid.</param>
public readonly record struct HostShrinkResult(int RequestedFrames, int GrantedFrames, int RetiredNow, int Debt, int TargetFrames)
{
    /// <summary>The request was cut to keep the host's minimum of frames in service.</summary>
    public bool Clamped => GrantedFrames < RequestedFrames;
}
