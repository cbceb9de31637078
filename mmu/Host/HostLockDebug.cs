using System.Diagnostics;

namespace ToyVmm.Mmu.Host;

/// <summary>
/// Debug-build lock accounting for mmu/LOCKING.md: counts, per thread, the
/// host locks held that forbid waiting (address-space, LRU, swap, allocator),
/// so a wait for a page lock or direct reclaim under one of them is caught.
/// </summary>
internal static class HostLockDebug
{
    [ThreadStatic] private static int t_spinLocksHeld;
    [ThreadStatic] private static int t_addressSpaceLocksHeld;

    [Conditional("DEBUG")]
    public static void EnterAddressSpace() { t_addressSpaceLocksHeld++; t_spinLocksHeld++; }

    [Conditional("DEBUG")]
    public static void ExitAddressSpace() { t_addressSpaceLocksHeld--; t_spinLocksHeld--; }

    [Conditional("DEBUG")]
    public static void AssertNoSpinLocksHeld() =>
        Debug.Assert(t_spinLocksHeld == 0, "no address-space lock is held while waiting for a page lock, for I/O or for reclaim");

    [Conditional("DEBUG")]
    public static void AssertNoAddressSpaceLockHeld() =>
        Debug.Assert(t_addressSpaceLocksHeld == 0, "allocation with reclaim is never entered with an address-space lock held");

    [Conditional("DEBUG")]
    public static void AssertAtMostOneAddressSpaceLock() =>
        Debug.Assert(t_addressSpaceLocksHeld <= 1, "at most one address-space lock is held at a time");
}
