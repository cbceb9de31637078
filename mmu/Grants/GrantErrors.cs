namespace ToyVmm.Mmu.Grants;

/// <summary>The answers of the grant hypercalls (GUEST-ABI 1.1: negative errno values).</summary>
public static class GrantErrors
{
    public const long Ok = 0;
    /// <summary>-ENOENT: no grant with that key (of this VM, for REMOVE).</summary>
    public const long NoSuchGrant = -2;
    /// <summary>-EBUSY: the range overlaps an attachment already there.</summary>
    public const long Busy = -16;
    /// <summary>-EEXIST: the key is in use on this host.</summary>
    public const long KeyInUse = -17;
    /// <summary>-EINVAL: a bad range, a size larger than the grant, no such attachment.</summary>
    public const long Invalid = -22;
}
