using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Devices;

/// <summary>
/// Reads a NUL-terminated name a guest passed by guest-physical address (the PHASE
/// hypercall), through the access side of guest memory like every guest access: its own
/// <see cref="VcpuLink"/> (index -1, attached only while it reads) is in guest
/// mode for one page at a time, so an invalidation of that page waits for it,
/// and it translates for reading, so a name never dirties its page.
/// </summary>
internal static unsafe class GuestNameReader
{
    /// <summary>Longest name (without its NUL).</summary>
    public const int MaxLength = 63;

    /// <summary>
    /// The name at <paramref name="gpa"/>: 1 to <see cref="MaxLength"/> printable
    /// ASCII characters (0x20-0x7E) and a NUL, every byte below <paramref name="limit"/>.
    /// Null when it is not one; bytes after the NUL are never read.
    /// </summary>
    public static string? TryRead(IGuestMemory memory, ulong gpa, ulong limit)
    {
        if (gpa >= limit) return null;
        Span<byte> name = stackalloc byte[MaxLength + 1];
        int length = 0;
        var link = new VcpuLink(-1);
        memory.AttachVcpu(link);
        try
        {
            while (length <= MaxLength)
            {
                ulong at = gpa + (ulong)length;
                if (at >= limit) return null;
                int chunk = (int)Math.Min(Math.Min(Page.Size - (at & Page.OffsetMask), limit - at), (ulong)(MaxLength + 1 - length));
                link.EnterGuest();
                try
                {
                    byte* page;
                    while (true)
                    {
                        // After entering guest mode, take requests before touching memory (VcpuLink);
                        // this reader caches nothing, so a flush needs only the acknowledgement.
                        if ((link.TakeRequests() & VcpuLink.FlushRequest) != 0) link.AcknowledgeFlush();
                        if (memory.Translate(link, new Gpa(at & ~Page.OffsetMask), AccessKind.Read, out page) != TranslateStatus.Ok)
                            return null;
                        // A fault leaves guest mode: a flush posted meanwhile may predate the answer.
                        if (!link.HasRequests) break;
                    }
                    // SAFETY: Translate returned the 4 KiB host page, valid while the link stays in guest mode.
                    var bytes = new ReadOnlySpan<byte>(page + (at & Page.OffsetMask), chunk);
                    for (int i = 0; i < bytes.Length; i++)
                    {
                        byte b = bytes[i];
                        if (b == 0) return length == 0 ? null : System.Text.Encoding.ASCII.GetString(name[..length]);
                        if (b < 0x20 || b > 0x7E) return null;
                        name[length++] = b;
                    }
                }
                finally { link.ExitGuest(); }
            }
            return null;   // no NUL within MaxLength characters
        }
        finally { memory.DetachVcpu(link); }
    }
}
