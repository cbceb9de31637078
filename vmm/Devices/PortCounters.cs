namespace ToyVmm.Devices;

/// <summary>Counts of device accesses, updated by every vCPU thread with interlocked adds.</summary>
public sealed class PortCounters
{
    private long _unknownIn, _unknownOut, _hypercalls, _unknownHypercalls;

    /// <summary><c>in</c> from a port with no device (read as all ones).</summary>
    public long UnknownPortIn => Volatile.Read(ref _unknownIn);
    /// <summary><c>out</c> to a port with no device (ignored).</summary>
    public long UnknownPortOut => Volatile.Read(ref _unknownOut);
    /// <summary>Every <c>vmcall</c>.</summary>
    public long Hypercalls => Volatile.Read(ref _hypercalls);
    /// <summary><c>vmcall</c> with an unknown number (answered -1000).</summary>
    public long UnknownHypercalls => Volatile.Read(ref _unknownHypercalls);

    internal void CountUnknownIn() => Interlocked.Increment(ref _unknownIn);
    internal void CountUnknownOut() => Interlocked.Increment(ref _unknownOut);
    internal void CountHypercall() => Interlocked.Increment(ref _hypercalls);
    internal void CountUnknownHypercall() => Interlocked.Increment(ref _unknownHypercalls);
}
