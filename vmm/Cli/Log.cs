using Microsoft.Extensions.Logging;

namespace ToyVmm.Cli;

/// <summary>Source-generated log messages of the command line and the VM runner.</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "loading {Path}: {Memory} of RAM, {Vcpus} vCPU(s)")]
    public static partial void Starting(ILogger logger, string path, string memory, int vcpus);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "entry 0x{Entry:x}, {Segments} segment(s), guest free memory from 0x{FreeStart:x}")]
    public static partial void Loaded(ILogger logger, ulong entry, int segments, ulong freeStart);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "{Path}: {Reason}")]
    public static partial void BadGuestFile(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 4, Level = LogLevel.Error, Message = "VM error: {Reason}")]
    public static partial void VmError(ILogger logger, string reason);

    [LoggerMessage(EventId = 5, Level = LogLevel.Error, Message = "host out of memory: {Reason}")]
    public static partial void HostOutOfMemory(ILogger logger, string reason);

    [LoggerMessage(EventId = 14, Level = LogLevel.Error, Message = "host failure: {Reason}")]
    public static partial void HostFailure(ILogger logger, string reason);

    [LoggerMessage(EventId = 15, Level = LogLevel.Error, Message = "cannot write the guest console: {Reason}")]
    public static partial void ConsoleFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "instruction limit: {Reason}")]
    public static partial void InstructionLimit(ILogger logger, string reason);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "{Reason}")]
    public static partial void Interrupted(ILogger logger, string reason);

    [LoggerMessage(EventId = 8, Level = LogLevel.Critical, Message = "internal error: {Reason}")]
    public static partial void InternalError(ILogger logger, string reason);

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "{Reason}")]
    public static partial void InvariantViolation(ILogger logger, string reason);

    [LoggerMessage(EventId = 11, Level = LogLevel.Information, Message = "{Line}")]
    public static partial void Stat(ILogger logger, string line);

    [LoggerMessage(EventId = 12, Level = LogLevel.Error, Message = "cannot build the VM: {Reason}")]
    public static partial void CannotBuild(ILogger logger, string reason);

    [LoggerMessage(EventId = 13, Level = LogLevel.Error, Message = "cannot write the {What} to {Path}: {Reason}")]
    public static partial void OutputFailed(ILogger logger, string what, string path, string reason);

    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "{Reason}")]
    public static partial void Overcommit(ILogger logger, string reason);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "VM ended: {Outcome}, status {Status}, {Instructions} instructions; console {ConsoleBytes} bytes, unknown port in/out {PortIn}/{PortOut}, hypercalls {Hypercalls} ({UnknownHypercalls} unknown)")]
    public static partial void Ended(ILogger logger, string outcome, int status, long instructions, long consoleBytes,
        long portIn, long portOut, long hypercalls, long unknownHypercalls);
}
