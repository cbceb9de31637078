namespace ToyVmm.Cpu;

/// <summary>
/// The host could not back a guest-physical page: no frame to reclaim, or the swap
/// device failed. A fault of the host, not of the guest, so it ends the VM with the
/// host status rather than as a VM error; the host's counters name the cause.
/// </summary>
public sealed class HostFailureException(string message) : Exception(message);
