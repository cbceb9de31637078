using Microsoft.Extensions.Logging;
using ToyVmm.Cpu;

namespace ToyVmm.Vm;

/// <summary>Source-generated log messages of the VM layer.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Debug, Message = "vCPU {Index} exited: {Kind} {Detail}")]
    public static partial void VcpuExited(ILogger logger, int index, VcpuExitKind kind, string detail);

    [LoggerMessage(EventId = 101, Level = LogLevel.Debug, Message = "translation tier: {Compiled} blocks compiled ({Ops} instructions inline), {Declined} not compiled, {Freed} released, {Live} held")]
    public static partial void TierCounters(ILogger logger, long compiled, long ops, long declined, long freed, long live);

    [LoggerMessage(EventId = 102, Level = LogLevel.Warning, Message = "--pin-vcpus: {Detail}")]
    public static partial void PinningDegraded(ILogger logger, string detail);

    [LoggerMessage(EventId = 103, Level = LogLevel.Debug, Message = "vCPU {Index} pinned to CPU {Cpu}")]
    public static partial void VcpuPinned(ILogger logger, int index, int cpu);
}
