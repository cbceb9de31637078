namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// Checks "the spte must never be established when the pte isn't": called
/// under the MMU lock at every secondary install and zap.
/// </summary>
public interface IMmuInvariantChecker
{
    void OnInstall(EptMmu mmu, Gpa gpa, Hva hva, Hfn frame);
    void OnZap(EptMmu mmu, Gpa gpa, Hfn frame);

    /// <summary>A vCPU filled its TLB from a present entry (the fast path of Translate).</summary>
    void OnTlbFill(EptMmu mmu, int vcpu, Gpa gpa, Hfn frame);
}

/// <summary>Receives fault and invalidation latencies (Stopwatch ticks) without locks or allocation.</summary>
public interface IMmuEventSink
{
    void FaultCompleted(int vcpu, long ticks);
    void FaultRetried(int vcpu);
    void InvalidateCompleted(long ticks, ulong pages);
}
