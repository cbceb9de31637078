namespace ToyVmm.Mmu.Host;

/// <summary>Access a host mapping allows (PROT_*). A write implies read in this model.</summary>
[Flags]
public enum HostProtection
{
    None = 0,
    Read = 1,
    Write = 2,
    ReadWrite = Read | Write,
}

/// <summary>Outcome of a host fault or <c>GetUserPages</c>.</summary>
public enum HostFaultStatus
{
    Ok = 0,
    /// <summary>No mapping covers the address (SIGSEGV / -EFAULT).</summary>
    BadAddress,
    /// <summary>The mapping does not allow the access, e.g. a write to a read-only mapping.</summary>
    Protection,
    /// <summary>No free frame and nothing could be reclaimed.</summary>
    OutOfMemory,
    /// <summary>Reading the page back from the swap file failed.</summary>
    SwapReadError,
    /// <summary>The swap slot's checksum does not match what was read: the copy is corrupt.</summary>
    SwapChecksumMismatch,
}

/// <summary>A host memory error surfaced to callers that use exceptions (tests, loaders, the CLI).</summary>
public class HostMemoryException(HostFaultStatus status, string message) : Exception(message)
{
    public HostFaultStatus Status { get; } = status;
}

/// <summary>The host ran out of frames: nothing free and nothing reclaimable (swap full or every page busy).</summary>
public sealed class HostOutOfMemoryException(string message) : HostMemoryException(HostFaultStatus.OutOfMemory, message);

/// <summary>The swap device failed (an I/O error, a full disk, a checksum mismatch).</summary>
public sealed class SwapIoException(string message, Exception? inner = null) : IOException(message, inner)
{
    private const int Enospc = 28;

    /// <summary>The device is full (ENOSPC): the swap file's filesystem has no room for it to grow.</summary>
    public bool OutOfSpace => InnerException is IOException io &&
        (io.HResult == Enospc || io.Message.Contains("No space left on device", StringComparison.OrdinalIgnoreCase));
}

/// <summary>
/// The swap file cannot be created (it exists, its folder is missing, no permission,
/// another run holds it): a problem with what the user asked for, reported before the guest runs.
/// </summary>
public sealed class SwapFileException(string message, Exception? inner = null) : IOException(message, inner);
