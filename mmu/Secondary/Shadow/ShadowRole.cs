namespace ToyVmm.Mmu.Secondary.Shadow;

/// <summary>
/// What a shadow page's entries mean besides the guest frame it shadows (KVM's
/// <c>kvm_mmu_page_role</c>): its level, the guest access accumulated above it,
/// whether NX bits count, and whether it maps a guest large page directly.
/// </summary>
/// <param name="Level">4 (PML4) down to 1 (PT).</param>
/// <param name="Access"><see cref="ShadowEntry.GuestUser"/>, <see cref="ShadowEntry.GuestWrite"/>, <see cref="ShadowEntry.GuestNoExec"/> of the path above.</param>
/// <param name="Nxe">EFER.NXE: bit 63 of a guest entry is no-execute.</param>
/// <param name="Direct">Maps a guest 2 MiB or 1 GiB page as 4 KiB pieces; shadows no guest table.</param>
public readonly record struct ShadowRole(int Level, ulong Access, bool Nxe, bool Direct)
{
    /// <summary>The role of a root: level 4, every access allowed so far.</summary>
    public static ShadowRole Root(bool nxe) => new(4, ShadowEntry.GuestUser | ShadowEntry.GuestWrite, nxe, Direct: false);

    public override string ToString() =>
        $"L{Level}{(Direct ? " direct" : "")} {((Access & ShadowEntry.GuestUser) != 0 ? "u" : "s")}{((Access & ShadowEntry.GuestWrite) != 0 ? "w" : "r")}{((Access & ShadowEntry.GuestNoExec) != 0 ? "nx" : "")}{(Nxe ? " nxe" : "")}";
}
