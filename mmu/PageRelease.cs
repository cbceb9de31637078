namespace ToyVmm.Mmu;

/// <summary>
/// How a caller of get_user_pages gives its short-lived frame reference back
/// (KVM's kvm_release_page_*). Shared by the host, which takes the reference
/// back, and the secondary MMU, which returns it through <c>IHostMemory</c>.
/// </summary>
public enum PageRelease
{
    /// <summary>The page was not used (a retried fault): its flags stay as they are.</summary>
    Unused,
    /// <summary>The page was read: mark it accessed.</summary>
    Clean,
    /// <summary>The page was (or will be, through a writable mapping) written: mark it accessed and dirty, so it is never dropped as clean.</summary>
    Dirty,
}
