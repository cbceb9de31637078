using Microsoft.Extensions.Logging;
using ToyVmm.Cpu;

namespace ToyVmm.Vm;

/// <summary>Source-generated log messages of the VM layer.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 100, Level = LogLevel.Debug, Message = "vCPU {Index} exited: {Kind} {Detail}")]
    public static partial void VcpuExited(ILogger logger, int index, VcpuExitKind kind, string detail);
}
