using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Grants;

/// <summary>
/// A VM's guest memory access with grants attached: a translation of a page in
/// an attached range goes to that attachment's secondary MMU, every other one to
/// the VM's own. With nothing attached it costs one read of an empty array.
/// </summary>
/// <remarks>
/// Attach publishes the new attachment before the attacher's own pages of the
/// range are discarded; detach unpublishes it before the attachment's MMU is
/// zapped. A translation that read the list before such a change might have
/// installed through the wrong MMU after that MMU's zap; it reads the list again
/// when it is done, and translates again when the list moved, so the pointer it
/// hands the vCPU always comes from the MMU the range belongs to now.
/// Lock: <c>_vcpuLock</c> guards the vCPU list and serialises publishing with
/// attaching vCPUs, so every attachment's MMU knows every vCPU.
/// </remarks>
public sealed class GrantRouter(ISecondaryMmu own) : IGuestMemory
{
    private readonly Lock _vcpuLock = new();
    private VcpuLink[] _vcpus = [];              // guarded by _vcpuLock
    private Attachment[] _attachments = [];      // replaced under _vcpuLock, read lock-free

    public ulong RamBytes => own.RamBytes;

    /// <summary>The VM's own secondary MMU.</summary>
    public ISecondaryMmu Own => own;

    /// <summary>The attachments now.</summary>
    public IReadOnlyList<Attachment> Attachments => Volatile.Read(ref _attachments);

    public void AttachVcpu(VcpuLink vcpu)
    {
        lock (_vcpuLock)
        {
            own.AttachVcpu(vcpu);
            foreach (var a in _attachments) a.Mmu.AttachVcpu(vcpu);
            _vcpus = [.. _vcpus, vcpu];
        }
    }

    public void DetachVcpu(VcpuLink vcpu)
    {
        lock (_vcpuLock)
        {
            own.DetachVcpu(vcpu);
            foreach (var a in _attachments) a.Mmu.DetachVcpu(vcpu);
            _vcpus = [.. _vcpus.Where(v => v != vcpu)];
        }
    }

    /// <summary>Route the attachment's range to its MMU (which learns every vCPU first).</summary>
    public void Publish(Attachment attachment)
    {
        lock (_vcpuLock)
        {
            foreach (var v in _vcpus) attachment.Mmu.AttachVcpu(v);
            Volatile.Write(ref _attachments, [.. _attachments, attachment]);
        }
    }

    /// <summary>Route the attachment's range back to the VM's own MMU.</summary>
    public void Unpublish(Attachment attachment)
    {
        lock (_vcpuLock) Volatile.Write(ref _attachments, [.. _attachments.Where(a => a != attachment)]);
    }

    public unsafe TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
    {
        while (true)
        {
            var list = Volatile.Read(ref _attachments);
            IGuestMemory target = own;
            foreach (var a in list)
                if (a.Covers(gpa)) { target = a.Mmu; break; }
            var status = target.Translate(vcpu, gpa, kind, out hostPage);
            // An attach or detach in the meantime may have zapped what target installed.
            if (ReferenceEquals(Volatile.Read(ref _attachments), list)) return status;
        }
    }
}
