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
}
