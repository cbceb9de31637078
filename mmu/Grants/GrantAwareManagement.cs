using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Mmu.Grants;

/// <summary>
/// A VM's management side with grants attached (GUEST-ABI 1.1): PAGEOUT of an
/// attached range pages out the owner's pages (contents kept; the result counts
/// the pages this call paged out); DISCARD that touches an attached range is
/// refused with -22 (only the owner discards its memory). Everything else goes
/// to the VM's own <see cref="GuestMemoryManager"/>.
/// </summary>
public sealed class GrantAwareManagement(GuestMemoryManager own, GrantVm vm) : IGuestMemoryManagement
{
    public ulong RamBytes => own.RamBytes;

    /// <summary>DISCARD zeroed pages, or an attach or detach put other pages behind a range.</summary>
    public event Action<Gpa, ulong>? ContentsReplaced
    {
        add { own.ContentsReplaced += value; MappingReplaced += value; }
        remove { own.ContentsReplaced -= value; MappingReplaced -= value; }
    }

    private event Action<Gpa, ulong>? MappingReplaced;

    /// <summary>An attach or detach changed what backs the range: decoded code of it is stale.</summary>
    internal void RaiseMappingReplaced(Gpa start, ulong bytes) => MappingReplaced?.Invoke(start, bytes);

    public long PageOut(Gpa start, ulong bytes)
    {
        var attached = vm.Router.Attachments;
        if (attached.Count == 0 || !GuestRange.Check(start, bytes, RamBytes)) return own.PageOut(start, bytes);
        long pages = 0;
        ulong at = start.Value, end = start.Value + bytes;
        while (at < end)
        {
            // The attachment at `at`, or the next one to begin after it.
            Attachment? inside = null;
            ulong next = end;
            foreach (var a in attached)
            {
                if (a.Covers(new Gpa(at))) { inside = a; break; }
                if (a.Gpa.Value > at) next = Math.Min(next, a.Gpa.Value);
            }
            if (inside is { } att)
            {
                ulong stop = Math.Min(end, att.End.Value);
                var hva = att.Grant.Start.Add(at - att.Gpa.Value);
                pages += att.Grant.OwnerMadvise.PageOut(hva, stop - at);
                at = stop;
            }
            else
            {
                pages += own.PageOut(new Gpa(at), next - at);
                at = next;
            }
        }
        return pages;
    }

    /// <summary>
    /// The listed pages in attached ranges go to their owners' host as one vectored
    /// page-out per attachment, the rest to this VM's own in one.
    /// </summary>
    public long PageOutPages(ReadOnlySpan<Gpa> pages)
    {
        var attached = vm.Router.Attachments;
        if (attached.Count == 0 || !GuestRange.CheckPages(pages, RamBytes)) return own.PageOutPages(pages);
        var mine = new List<Gpa>(pages.Length);
        var theirs = new Dictionary<Attachment, List<Hva>>(ReferenceEqualityComparer.Instance);
        foreach (var page in pages)
        {
            Attachment? inside = null;
            foreach (var a in attached)
                if (a.Covers(page)) { inside = a; break; }
            if (inside is not { } att) { mine.Add(page); continue; }
            if (!theirs.TryGetValue(att, out var list)) theirs[att] = list = new List<Hva>();
            list.Add(att.Grant.Start.Add(page.Value - att.Gpa.Value));
        }
        long done = mine.Count == 0 ? 0 : own.PageOutPages(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(mine));
        foreach (var (att, hvas) in theirs)
            done += att.Grant.OwnerMadvise.PageOutPages(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(hvas));
        return done;
    }

    public long Discard(Gpa start, ulong bytes)
    {
        foreach (var a in vm.Router.Attachments)
            if (a.Overlaps(start, bytes)) return GuestRange.Invalid;
        return own.Discard(start, bytes);
    }
}
