namespace ToyVmm.Cli;

/// <summary>
/// Exit statuses of <c>toyvmm</c> (README.md "Exit status"). A guest that ends
/// normally gives its own status: 0 when every vCPU halted, or the value it wrote
/// to port 0xF4 (any of 0..255, so a guest can mimic the codes below; the VMM's
/// line on standard error tells them apart).
/// </summary>
public static class ExitCodes
{
    /// <summary>The VMM itself failed (a bug).</summary>
    public const int InternalError = 1;
    /// <summary>Bad command line or options; a usage line is printed.</summary>
    public const int Usage = 2;
    /// <summary>The guest file cannot be read or breaks a GUEST-ABI.md binary rule.</summary>
    public const int BadGuestFile = 3;
    /// <summary>The guest crashed the VM: exception with no IDT, triple fault, unbacked access, unsupported instruction.</summary>
    public const int VmError = 4;
    /// <summary>The host cannot provide the guest's RAM.</summary>
    public const int HostOutOfMemory = 5;
    /// <summary>
    /// The host failed while the guest ran (no frame to reclaim, a swap write or read
    /// error, a swap file changed behind the VMM's back): the same status as
    /// <see cref="HostOutOfMemory"/>, the message names the cause.
    /// </summary>
    public const int HostFailure = 5;
    /// <summary>A vCPU reached the --max-instructions limit.</summary>
    public const int InstructionLimit = 6;
    /// <summary>The MMU invariant checker (--check) caught a secondary mapping of a page the host no longer maps.</summary>
    public const int InvariantViolation = 7;
    /// <summary>The guest console cannot be written (a full disk, an I/O error): the message says why.</summary>
    public const int ConsoleError = 8;
    /// <summary>
    /// Standard output was closed by its reader (<c>toyvmm run g.elf | head -1</c>): the
    /// run stops quietly with the status of a process killed by SIGPIPE (128 + 13).
    /// </summary>
    public const int OutputClosed = 141;
    /// <summary>Stopped by SIGINT/SIGTERM/SIGHUP (128 + SIGINT).</summary>
    public const int Interrupted = 130;
}
