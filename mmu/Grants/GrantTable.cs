using System.Diagnostics;

namespace ToyVmm.Mmu.Grants;

/// <summary>
/// The grants of one host, by key (GUEST-ABI 1.1 "Grants"): make, attach, detach
/// and remove, exactly as the ABI says, and what happens when a VM ends. A call
/// that fails changes nothing.
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c> guards the key table and every VM's list of attachments; it
/// is the outermost lock of grants (taken by hypercalls on vCPU threads, which have
/// left guest mode, and by the VMM when a VM ends) and is never taken under a host,
/// grant or MMU lock. Under it a call may discard host pages, zap MMUs and wait for
/// vCPU flushes: those only take locks further in.
/// </remarks>
public sealed class GrantTable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<ulong, Grant> _grants = [];   // guarded by _lock

    /// <summary>Grants now.</summary>
    public int Count
    {
        get { lock (_lock) return _grants.Count; }
    }

    /// <summary>Every grant now (for reports and tests).</summary>
    public IReadOnlyList<Grant> Grants
    {
        get { lock (_lock) return [.. _grants.Values]; }
    }

    /// <summary>Raised under the table's lock for every new grant (measurements hook its recalls).</summary>
    public event Action<Grant>? GrantMade;

    /// <summary>Test seam: runs inside attach after the grant was found, before the attachment's MMU is made.</summary>
    internal Action? DuringAttachHook { get; set; }

    /// <summary>GRANT_MAKE: 0; -22 bad range; -17 the key is in use on this host.</summary>
    public long Make(GrantVm vm, Gpa start, ulong bytes, ulong key)
    {
        if (!vm.OwnRange(start, bytes)) return GrantErrors.Invalid;
        lock (_lock)
        {
            if (_grants.ContainsKey(key)) return GrantErrors.KeyInUse;
            var grant = new Grant(key, vm, vm.Host, vm.Madvise, start, vm.ToHva(start), bytes);
            _grants.Add(key, grant);
            GrantMade?.Invoke(grant);
        }
        return GrantErrors.Ok;
    }

    /// <summary>
    /// GRANT_ATTACH: map [start, start+bytes) of <paramref name="vm"/> onto the first
    /// bytes of the grant; what was there is discarded. 0; -2 no such grant;
    /// -22 bad range or bytes larger than the grant; -16 overlaps an attachment.
    /// </summary>
    public long Attach(GrantVm vm, ulong key, ulong bytes, Gpa start)
    {
        if (!vm.OwnRange(start, bytes)) return GrantErrors.Invalid;
        lock (_lock)
        {
            if (!_grants.TryGetValue(key, out var grant)) return GrantErrors.NoSuchGrant;
            if (bytes > grant.Bytes) return GrantErrors.Invalid;
            foreach (var a in vm.AttachmentsLocked)
                if (a.Overlaps(start, bytes)) return GrantErrors.Busy;
            DuringAttachHook?.Invoke();
            var view = grant.NewView(bytes);
            if (view is null) return GrantErrors.NoSuchGrant;
            // An MMU of the attacher's kind over the grant, with one slot: the attached range.
            var mmu = vm.MmuFactory(view, vm.RamBytes, view.Start);
            mmu.RemoveSlot(0);
            mmu.AddSlot(new Secondary.MemorySlot(Attachment.SlotId, start, bytes, view.Start));
            var attachment = new Attachment(grant, view, mmu, start, bytes);
            vm.AttachmentsLocked.Add(attachment);
            // Publish first, then drop the VM's own pages of the range: a vCPU that
            // translated through its own MMU before the publish is zapped and flushed
            // by the discard, and one after it goes to the attachment.
            vm.Router.Publish(attachment);
            vm.Madvise.DontNeed(vm.ToHva(start), bytes);
            vm.Management.RaiseMappingReplaced(start, bytes);
        }
        return GrantErrors.Ok;
    }

    /// <summary>GRANT_DETACH of exactly an attached range: 0; -22 no such attachment.</summary>
    public long Detach(GrantVm vm, Gpa start, ulong bytes)
    {
        lock (_lock)
        {
            var a = vm.AttachmentsLocked.Find(x => x.Gpa == start && x.Bytes == bytes);
            if (a is null) return GrantErrors.Invalid;
            DetachLocked(vm, a);
        }
        return GrantErrors.Ok;
    }

    /// <summary>GRANT_REMOVE by the VM that made it: 0; -2 no grant of this VM with that key.</summary>
    public long Remove(GrantVm vm, ulong key)
    {
        lock (_lock)
        {
            if (!_grants.TryGetValue(key, out var grant) || grant.Owner != vm) return GrantErrors.NoSuchGrant;
            RemoveLocked(grant);
        }
        return GrantErrors.Ok;
    }

    /// <summary>
    /// <paramref name="vm"/> has ended (its vCPUs stopped): its grants are removed
    /// (their attachers' ranges become private zero-filled memory) and its attachments
    /// detached. Call before its host address space goes.
    /// </summary>
    public void VmEnded(GrantVm vm)
    {
        lock (_lock)
        {
            foreach (var grant in _grants.Values.Where(g => g.Owner == vm).ToList()) RemoveLocked(grant);
            foreach (var a in vm.AttachmentsLocked.ToList()) DetachLocked(vm, a);
        }
    }

    private void RemoveLocked(Grant grant)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "the table's lock is held");
        foreach (var attacher in AttachersLocked(grant))
            foreach (var a in attacher.AttachmentsLocked.Where(a => a.Grant == grant).ToList())
                DetachLocked(attacher, a);
        _grants.Remove(grant.Key);
        grant.Remove();
    }

    /// <summary>Every VM with an attachment of <paramref name="grant"/>.</summary>
    private IEnumerable<GrantVm> AttachersLocked(Grant grant) =>
        _attachers.Where(vm => vm.AttachmentsLocked.Any(a => a.Grant == grant)).ToList();

    private readonly List<GrantVm> _attachers = [];   // guarded by _lock: every VM that attached something, once

    /// <summary>
    /// Detach: route the range back to the VM's own MMU, close the view (its faults
    /// in flight are marked and will not install), zap the attachment's MMU and flush
    /// the vCPUs, and only then leave the grant's recalls (until the zap, a recall
    /// must still reach the attachment, or the host could free a frame it maps);
    /// then make the range private zero-filled memory again.
    /// </summary>
    private static void DetachLocked(GrantVm vm, Attachment a)
    {
        vm.AttachmentsLocked.Remove(a);
        vm.Router.Unpublish(a);
        a.Grant.CloseView(a.View);
        a.Mmu.RemoveSlot(Attachment.SlotId);
        (a.Mmu as IDisposable)?.Dispose();
        a.Grant.ForgetView(a.View);
        vm.Madvise.DontNeed(vm.ToHva(a.Gpa), a.Bytes);
        vm.Management.RaiseMappingReplaced(a.Gpa, a.Bytes);
    }

    /// <summary>Every VM that may attach must be known to the table (so the owner's removal finds its attachers).</summary>
    public void Join(GrantVm vm)
    {
        lock (_lock) if (!_attachers.Contains(vm)) _attachers.Add(vm);
    }
}
