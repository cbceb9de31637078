namespace ToyVmm.Mmu.Host;

/// <summary>
/// A virtual memory area: an anonymous private mapping of host-virtual pages
/// [StartVpn, EndVpn) with one protection. Guarded by the address-space lock.
/// </summary>
public sealed class Vma
{
    internal Vma(ulong startVpn, ulong endVpn, HostProtection protection)
    {
        StartVpn = startVpn; EndVpn = endVpn; Protection = protection;
    }

    public ulong StartVpn { get; internal set; }
    public ulong EndVpn { get; internal set; }
    public HostProtection Protection { get; internal set; }

    public Hva Start => Hva.FromPageNumber(StartVpn);
    public Hva End => Hva.FromPageNumber(EndVpn);
    public ulong Pages => EndVpn - StartVpn;
    public bool Contains(ulong vpn) => vpn >= StartVpn && vpn < EndVpn;

    public override string ToString() => $"vma [{Start}, {End}) {Protection}";
}
