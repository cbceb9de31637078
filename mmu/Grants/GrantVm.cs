using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Grants;

/// <summary>Makes a secondary MMU of a VM's kind over a host, with one slot of guest RAM [0, ramBytes) at the given host address (as EPT's constructor).</summary>
public delegate ISecondaryMmu SecondaryMmuFactory(IHostMemory host, ulong ramBytes, Hva ramHva);

/// <summary>
/// One VM as a party to grants: its RAM in its host address space, its own
/// secondary MMU and a factory for more of the same kind (one per attachment),
/// its access through the router and its management that knows attachments.
/// The grant hypercalls of its vCPUs land here.
/// </summary>
public sealed class GrantVm
{
    /// <summary>The VMM's reserved top of guest RAM, never part of a grant or an attachment (GUEST-ABI "Memory map").</summary>
    public const ulong ReservedTopBytes = 0x100000;

    internal readonly List<Attachment> AttachmentsLocked = [];   // guarded by the table's lock

    public GrantVm(GrantTable table, int index, IHostMemory host, IHostMadvise madvise, ISecondaryMmu mmu, GuestMemoryManager own, Hva ramHva, SecondaryMmuFactory mmuFactory)
    {
        Table = table;
        Index = index;
        Host = host;
        Madvise = madvise;
        RamHva = ramHva;
        MmuFactory = mmuFactory;
        Router = new GrantRouter(mmu);
        Management = new GrantAwareManagement(own, this);
        table.Join(this);
    }

    public GrantTable Table { get; }
    /// <summary>The VM's number on the host (0, 1, ...).</summary>
    public int Index { get; }
    public IHostMemory Host { get; }
    public IHostMadvise Madvise { get; }
    public Hva RamHva { get; }
    public SecondaryMmuFactory MmuFactory { get; }
    /// <summary>What the VM's vCPUs translate through.</summary>
    public GrantRouter Router { get; }
    /// <summary>What the VM's devices and page-out schedules act on.</summary>
    public GrantAwareManagement Management { get; }
    public ulong RamBytes => Router.RamBytes;

    /// <summary>Page-aligned, non-empty, inside the VM's own part of RAM (all but the reserved top).</summary>
    public bool OwnRange(Gpa start, ulong bytes) =>
        bytes != 0 && RamBytes > ReservedTopBytes && GuestRange.Check(start, bytes, RamBytes - ReservedTopBytes);

    public Hva ToHva(Gpa gpa) => RamHva.Add(gpa.Value);

    /// <summary>GRANT_MAKE (0x102).</summary>
    public long Make(Gpa start, ulong bytes, ulong key) => Table.Make(this, start, bytes, key);
    /// <summary>GRANT_ATTACH (0x103).</summary>
    public long Attach(ulong key, ulong bytes, Gpa start) => Table.Attach(this, key, bytes, start);
    /// <summary>GRANT_DETACH (0x104).</summary>
    public long Detach(Gpa start, ulong bytes) => Table.Detach(this, start, bytes);
    /// <summary>GRANT_REMOVE (0x105).</summary>
    public long Remove(ulong key) => Table.Remove(this, key);
}
