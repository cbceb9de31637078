namespace ToyVmm.Mmu.Secondary;

/// <summary>
/// Checks "the spte must never be established when the pte isn't": called
/// under the MMU lock at every secondary install and zap.
/// </summary>
public interface IMmuInvariantChecker
{
    void OnInstall(EptMmu mmu, Gpa gpa, Hva hva, Hfn frame);
    /// <summary>An entry was zapped; <paramref name="zapped"/> is what it held (its vCPU bits name the TLB holders asked to flush).</summary>
    void OnZap(EptMmu mmu, Gpa gpa, EptEntry zapped);

    /// <summary>A vCPU filled its TLB from a present entry (the fast path of Translate).</summary>
    void OnTlbFill(EptMmu mmu, int vcpu, Gpa gpa, Hfn frame);
}
