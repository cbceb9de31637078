namespace ToyVmm.Mmu.Host;

// Byte access through GetUserPages, for loaders, tests and the CLI. Each page
// is held by a short-lived reference while it is copied.

public sealed partial class HostAddressSpace
{
    /// <summary>Copy bytes out of the address space, faulting pages in. Throws <see cref="HostMemoryException"/> on a fault error.</summary>
    public void Read(Hva address, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            int offset = (int)address.PageOffset;
            int n = Math.Min(destination.Length, (int)Page.Size - offset);
            var status = GetUserPage(address, write: false, out var frame);
            if (status != HostFaultStatus.Ok) Throw(status, address);
            _frames.PageSpan(frame).Slice(offset, n).CopyTo(destination);
            _host.ReleasePage(frame, PageRelease.Clean);
            destination = destination[n..];
            address = address.Add((ulong)n);
        }
    }

    /// <summary>Copy bytes into the address space, faulting pages in for write.</summary>
    public void Write(Hva address, ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            int offset = (int)address.PageOffset;
            int n = Math.Min(source.Length, (int)Page.Size - offset);
            var status = GetUserPage(address, write: true, out var frame);
            if (status != HostFaultStatus.Ok) Throw(status, address);
            source[..n].CopyTo(_frames.PageSpan(frame).Slice(offset, n));
            _host.ReleasePage(frame, PageRelease.Dirty);
            source = source[n..];
            address = address.Add((ulong)n);
        }
    }

    public ulong ReadUInt64(Hva address)
    {
        Span<byte> b = stackalloc byte[8];
        Read(address, b);
        return BitConverter.ToUInt64(b);
    }

    public void WriteUInt64(Hva address, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BitConverter.TryWriteBytes(b, value);
        Write(address, b);
    }

    private void Throw(HostFaultStatus status, Hva address)
    {
        string what = status switch
        {
            HostFaultStatus.BadAddress => "no mapping",
            HostFaultStatus.Protection => "access not allowed by the mapping",
            HostFaultStatus.OutOfMemory => "out of host memory (nothing free, nothing reclaimable)",
            // The swap's own messages name the failure ("swap read failed: ...", "swap checksum mismatch on slot ...").
            HostFaultStatus.SwapReadError => _host.Stats.LastError ?? "swap read failed",
            HostFaultStatus.SwapChecksumMismatch => _host.Stats.LastError ?? "swap checksum mismatch",
            _ => status.ToString(),
        };
        string message = $"host fault at {address} in address space {Id}: {what}";
        if (status == HostFaultStatus.OutOfMemory) throw new HostOutOfMemoryException(message);
        throw new HostMemoryException(status, message);
    }
}
