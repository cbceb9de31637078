namespace ToyVmm.Mmu.Notifiers;

/// <summary>
/// The host page references a secondary MMU takes through get_user_pages and
/// gives back, as a protocol's secondary half sees them (<see cref="INotifierProtocol.FaultInstalled"/>,
/// <see cref="INotifierProtocol.MappingDropped"/>). A secondary MMU passes the
/// host it runs over; the protocol never names a host or an MMU type.
/// </summary>
public interface IUserPageReferences
{
    /// <summary>Give back one reference taken by get_user_pages, saying how the page was used.</summary>
    void PutUserPage(Hfn frame, PageRelease how);

    /// <summary>Mark the page dirty (it was, or will be, written through a secondary mapping).</summary>
    void SetPageDirty(Hfn frame);
}
