namespace ToyVmm.Vm;

/// <summary>
/// One way of backing guest RAM, by name: what a test or a fuzz target builds when it
/// must run a guest "under every MMU mode".
/// </summary>
/// <param name="Name">Short name (<c>flat</c>, <c>ept</c>).</param>
/// <param name="Create">Builds the memory for (RAM bytes, vCPUs, host frame-pool bytes); the frame pool is ignored where there is no host.</param>
public sealed record MemoryMode(string Name, Func<ulong, int, ulong, BackedGuestMemory> Create)
{
    public override string ToString() => Name;
}

/// <summary>
/// Guest memory built by a <see cref="MemoryMode"/>: what the VM runs on, and the host
/// behind it when there is one (its consistency checks and the invariant checker).
/// Disposing it frees everything the mode built.
/// </summary>
public sealed class BackedGuestMemory(VmMemory memory, HostBackedMemory? host) : IDisposable
{
    public VmMemory Memory { get; } = memory;
    /// <summary>The simulated host and secondary MMU; null for flat memory.</summary>
    public HostBackedMemory? Host { get; } = host;

    public void Dispose()
    {
        Host?.Dispose();
        Memory.Owner?.Dispose();
    }
}

/// <summary>
/// Every way the VMM can back guest RAM, listed in one place, so that whatever must
/// run under each of them (the interpreter's and the hypercalls' fuzz targets) picks a
/// new one up: every <see cref="SecondaryMmuKind"/> is a mode.
/// </summary>
public static class MemoryModes
{
    /// <summary>Flat RAM: no host, no secondary MMU (<c>--flat-memory</c>).</summary>
    public static readonly MemoryMode Flat = new("flat", (ram, _, _) => new BackedGuestMemory(VmMemory.Flat(ram), null));

    /// <summary>
    /// A secondary MMU over the simulated host, with the invariant checker on (a
    /// violation is recorded by the checker, for the caller to look at).
    /// </summary>
    public static MemoryMode HostBacked(SecondaryMmuKind kind) => new(kind.ToString().ToLowerInvariant(), (ram, vcpus, hostBytes) =>
    {
        var host = new HostBackedMemory(ram, vcpus, new GuestMemoryConfig(HostMemoryBytes: hostBytes, Check: true, Mmu: kind));
        return new BackedGuestMemory(host.Memory, host);
    });

    /// <summary>Flat memory, then one host-backed mode per <see cref="SecondaryMmuKind"/> (ept, shadow): a new kind is picked up here.</summary>
    public static readonly IReadOnlyList<MemoryMode> All = [Flat, .. Enum.GetValues<SecondaryMmuKind>().Select(HostBacked)];
}
