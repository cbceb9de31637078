namespace ToyVmm.Devices;

/// <summary>Why the guest console's output failed.</summary>
/// <param name="PipeClosed">The reader went away (EPIPE, e.g. <c>toyvmm run g.elf | head -1</c>): a quiet stop.</param>
/// <param name="Reason">The error in words (<c>No space left on device</c>).</param>
public sealed record ConsoleFailure(bool PipeClosed, string Reason);
