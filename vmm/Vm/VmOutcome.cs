namespace ToyVmm.Vm;

/// <summary>How a VM run ended.</summary>
public enum VmOutcome
{
    /// <summary>Every vCPU executed <c>hlt</c>: exit status 0.</summary>
    AllHalted,
    /// <summary>The guest wrote the exit port: exit status = value &amp; 0xFF.</summary>
    ExitPort,
    /// <summary>A vCPU could not go on (exception with no IDT, triple fault, unbacked access, unsupported instruction).</summary>
    VmError,
    /// <summary>A vCPU used up the instruction limit.</summary>
    InstructionLimit,
    /// <summary>The host could not provide guest memory.</summary>
    HostOutOfMemory,
    /// <summary>
    /// The host failed while the guest ran: no frame left to reclaim, a swap write or
    /// read error, a swap slot whose checksum no longer matches. Exit status 5, as
    /// <see cref="HostOutOfMemory"/>: a fault of the host, not of the guest.
    /// </summary>
    HostFailure,
    /// <summary>The run was cancelled from outside (Ctrl+C, SIGTERM, a test).</summary>
    Interrupted,
    /// <summary>The MMU invariant checker caught a broken invariant (--check).</summary>
    InvariantViolation,
    /// <summary>The guest console's output failed (a closed pipe, a full disk): the run stops.</summary>
    ConsoleFailed,
    /// <summary>The VMM itself failed (a bug): an exception escaped a vCPU.</summary>
    InternalError,
}

/// <summary>The result of <see cref="VirtualMachine.Run"/>.</summary>
/// <param name="Outcome">How the run ended.</param>
/// <param name="GuestStatus">The guest's exit status for <see cref="VmOutcome.ExitPort"/>, 0 for <see cref="VmOutcome.AllHalted"/>.</param>
/// <param name="Message">One clear line for every outcome but the two normal ones.</param>
/// <param name="InstructionsRetired">Sum over all vCPUs (0 where the interpreter could not say).</param>
public sealed record VmResult(VmOutcome Outcome, int GuestStatus, string? Message, long InstructionsRetired)
{
    public bool IsNormalExit => Outcome is VmOutcome.AllHalted or VmOutcome.ExitPort;
}
