using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Vm;

/// <summary>
/// Writes guest-physical memory from the VMM side (loading segments, building
/// boot tables) through the same <see cref="IGuestMemory"/> the vCPUs use, so
/// it works for every implementation of guest memory.
/// </summary>
/// <remarks>
/// Call only before the vCPUs start. The writer holds its own <see cref="VcpuLink"/>
/// (index -1, attached while the writer lives): it enters guest mode for one page at
/// a time and takes any pending request before it translates, and an invalidation
/// (the host's reclaimer may run meanwhile) waits while it is in guest mode, so it
/// never uses a host pointer to a frame that has been freed.
/// </remarks>
public sealed unsafe class GuestPhysicalWriter : IDisposable
{
    private readonly IGuestMemory _memory;
    private readonly VcpuLink _link = new(-1);

    public GuestPhysicalWriter(IGuestMemory memory)
    {
        _memory = memory;
        memory.AttachVcpu(_link);
    }

    public void Dispose() => _memory.DetachVcpu(_link);

    /// <summary>Copies <paramref name="bytes"/> to guest-physical <paramref name="start"/>.</summary>
    public void Write(Gpa start, ReadOnlySpan<byte> bytes)
    {
        CheckRange(start, (ulong)bytes.Length);
        ulong done = 0;
        while (done < (ulong)bytes.Length)
        {
            Gpa at = start.Add(done);
            int chunk = (int)Math.Min(Page.Size - at.PageOffset, (ulong)bytes.Length - done);
            var page = EnterAndTranslate(at);
            try
            {
                bytes.Slice((int)done, chunk).CopyTo(page.Slice((int)at.PageOffset, chunk));
            }
            finally
            {
                _link.ExitGuest();
            }
            done += (ulong)chunk;
        }
    }

    /// <summary>Sets <paramref name="length"/> guest-physical bytes from <paramref name="start"/> to zero.</summary>
    public void Zero(Gpa start, ulong length)
    {
        CheckRange(start, length);
        ulong done = 0;
        while (done < length)
        {
            Gpa at = start.Add(done);
            int chunk = (int)Math.Min(Page.Size - at.PageOffset, length - done);
            var page = EnterAndTranslate(at);
            try
            {
                page.Slice((int)at.PageOffset, chunk).Clear();
            }
            finally
            {
                _link.ExitGuest();
            }
            done += (ulong)chunk;
        }
    }

    /// <summary>Writes one little-endian 64-bit value.</summary>
    public void WriteUInt64(Gpa at, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        Write(at, b);
    }

    /// <summary>Reads guest-physical bytes (tests and diagnostics).</summary>
    public void Read(Gpa start, Span<byte> destination)
    {
        CheckRange(start, (ulong)destination.Length);
        ulong done = 0;
        while (done < (ulong)destination.Length)
        {
            Gpa at = start.Add(done);
            int chunk = (int)Math.Min(Page.Size - at.PageOffset, (ulong)destination.Length - done);
            var page = EnterAndTranslate(at);
            try
            {
                page.Slice((int)at.PageOffset, chunk).CopyTo(destination.Slice((int)done, chunk));
            }
            finally
            {
                _link.ExitGuest();
            }
            done += (ulong)chunk;
        }
    }

    // Leaves the link in guest mode on success; the caller must ExitGuest when done with the page.
    private Span<byte> EnterAndTranslate(Gpa at)
    {
        _link.EnterGuest();
        // After entering guest mode, take requests before touching memory (VcpuLink ordering);
        // this writer caches nothing, so a flush needs only the acknowledgement.
        if ((_link.TakeRequests() & VcpuLink.FlushRequest) != 0)
            _link.AcknowledgeFlush();
        var status = _memory.Translate(_link, at, AccessKind.Write, out byte* hostPage);
        if (status != TranslateStatus.Ok)
        {
            _link.ExitGuest();
            if (status == TranslateStatus.HostError)
                throw new ToyVmm.Cpu.HostFailureException($"the VMM cannot write guest memory at {at}");
            throw new InvalidOperationException($"the VMM cannot write guest memory at {at}: {status}");
        }
        // SAFETY: Translate returned a 4 KiB host page that stays valid while this link is in guest mode.
        return new Span<byte>(hostPage, (int)Page.Size);
    }

    private void CheckRange(Gpa start, ulong length)
    {
        if (start.Value > _memory.RamBytes || length > _memory.RamBytes - start.Value)
            throw new ArgumentOutOfRangeException(nameof(start), $"{start}+0x{length:x} is outside guest RAM (0x{_memory.RamBytes:x} bytes)");
    }
}
