namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// Checks "the spte must never be established when the pte isn't": called
/// under the MMU lock at every secondary install and zap, by any secondary MMU
/// (EPT or shadow). It asks <paramref name="host"/> whether a frame still backs
/// an address, so it needs nothing of the MMU's own table.
/// </summary>
public interface IMmuInvariantChecker
{
    /// <summary>A secondary entry for the guest page <paramref name="gpa"/> (behind <paramref name="hva"/>) now maps <paramref name="frame"/>.</summary>
    void OnInstall(IHostMemory host, Gpa gpa, Hva hva, Hfn frame);

    /// <summary>An entry was zapped; <paramref name="zapped"/> is what it held (its holders are the TLBs asked to flush).</summary>
    void OnZap(IHostMemory host, ZappedEntry zapped);

    /// <summary>A vCPU filled its TLB from a present entry for the guest page <paramref name="gpa"/> behind <paramref name="hva"/> (the fast path of Translate).</summary>
    void OnTlbFill(IHostMemory host, int vcpu, Gpa gpa, Hva hva, Hfn frame);
}
