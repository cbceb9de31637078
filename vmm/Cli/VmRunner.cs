using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ToyVmm.Loader;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>Where the guest console goes (standard output in the program, a buffer in tests).</summary>
public sealed record GuestConsoleOutput(Stream Stream);

/// <summary>
/// The hosted service behind <c>toyvmm run</c>: loads the guest, runs the VM on a
/// dedicated thread (which starts the vCPU threads), sets the exit status and
/// stops the application. The host's stopping token (Ctrl+C, SIGTERM) stops every vCPU.
/// </summary>
public sealed class VmRunner : BackgroundService
{
    private readonly RunOptions _options;
    private readonly ILogger<VmRunner> _logger;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ExitStatus _exitStatus;
    private readonly GuestConsoleOutput _console;

    public VmRunner(IOptions<RunOptions> options, ILogger<VmRunner> logger, IHostApplicationLifetime lifetime,
        ExitStatus exitStatus, GuestConsoleOutput console)
    {
        _options = options.Value;
        _logger = logger;
        _lifetime = lifetime;
        _exitStatus = exitStatus;
        _console = console;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            _exitStatus.Value = await Task.Factory.StartNew(() => RunVm(stoppingToken),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        catch (Exception ex)
        {
            Log.InternalError(_logger, $"{ex.GetType().Name}: {ex.Message}");
            _exitStatus.Value = ExitCodes.InternalError;
        }
        finally
        {
            _lifetime.StopApplication();
        }
    }

    /// <summary>Loads and runs the guest; returns the process exit status.</summary>
    public int RunVm(CancellationToken stoppingToken)
    {
        var o = _options;
        Log.Starting(_logger, o.GuestPath, SizeParser.Format(o.MemoryBytes), o.Vcpus);
        ElfImage image;
        try
        {
            image = ElfLoader.LoadFile(o.GuestPath, o.MemoryBytes);
        }
        catch (ElfLoadException ex)
        {
            Log.BadGuestFile(_logger, o.GuestPath, ex.Message);
            return ExitCodes.BadGuestFile;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Log.BadGuestFile(_logger, o.GuestPath, $"cannot read the file: {ex.Message}");
            return ExitCodes.BadGuestFile;
        }
        Log.Loaded(_logger, image.Entry, image.Segments.Count, image.HighestEnd.Value);

        ulong hostBytes = (ulong)Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        if (hostBytes != 0 && o.MemoryBytes > hostBytes)
        {
            Log.HostOutOfMemory(_logger, $"--memory {SizeParser.Format(o.MemoryBytes)} is more than the host's {SizeParser.Format(hostBytes)}");
            return ExitCodes.HostOutOfMemory;
        }

        var config = new VmConfig(o.MemoryBytes, o.Vcpus, o.MaxInstructions > 0 ? o.MaxInstructions : long.MaxValue);
        HostBackedMemory? backing = null;
        VirtualMachine vm;
        try
        {
            if (!o.FlatMemory)
                backing = new HostBackedMemory(o.MemoryBytes, o.Vcpus, new GuestMemoryConfig(
                    HostMemoryBytes: o.HostMemoryBytes != 0 ? o.HostMemoryBytes : o.MemoryBytes + (o.MemoryBytes >> 3),
                    SwapFilePath: o.SwapFile,
                    Protocol: o.Protocol,
                    Check: o.Check,
                    PageOutIntervalMs: o.PageOutIntervalMs), _logger);
            vm = VirtualMachine.Create(config, image, _console.Stream,
                backing is null ? null : _ => backing.Mmu, logger: _logger, measurements: backing?.Measurements);
        }
        catch (OutOfMemoryException)
        {
            backing?.Dispose();
            Log.HostOutOfMemory(_logger, $"cannot allocate {SizeParser.Format(o.MemoryBytes)} of guest RAM");
            return ExitCodes.HostOutOfMemory;
        }
        catch (HostMemoryException ex)
        {
            backing?.Dispose();
            Log.HostOutOfMemory(_logger, ex.Message);
            return ExitCodes.HostOutOfMemory;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            backing?.Dispose();
            Log.VmError(_logger, $"cannot set up the host: {ex.Message}");
            return ExitCodes.VmError;
        }
        catch (ArgumentException ex)
        {
            backing?.Dispose();
            Log.CannotBuild(_logger, ex.Message);
            return ExitCodes.Usage;
        }

        using (backing)
        using (vm)
        {
            if (backing?.Checker is { } checker)
            {
                checker.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
                checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString());
            }
            var result = vm.Run(stoppingToken);
            var c = vm.Devices.Counters;
            Log.Ended(_logger, result.Outcome.ToString(), result.GuestStatus, result.InstructionsRetired,
                vm.Devices.Console.BytesWritten, c.UnknownPortIn, c.UnknownPortOut, c.Hypercalls, c.UnknownHypercalls);
            if (o.Stats)
            {
                Log.Stat(_logger, $"guest: {result.InstructionsRetired} instructions retired");
                if (backing is not null)
                    foreach (var line in backing.Summary()) Log.Stat(_logger, line);
            }
            return ToExitCode(result);
        }
    }

    private int ToExitCode(VmResult result)
    {
        string message = result.Message ?? result.Outcome.ToString();
        switch (result.Outcome)
        {
            case VmOutcome.AllHalted:
            case VmOutcome.ExitPort:
                return result.GuestStatus;
            case VmOutcome.VmError:
                Log.VmError(_logger, message);
                return ExitCodes.VmError;
            case VmOutcome.InstructionLimit:
                Log.InstructionLimit(_logger, message);
                return ExitCodes.InstructionLimit;
            case VmOutcome.HostOutOfMemory:
                Log.HostOutOfMemory(_logger, message);
                return ExitCodes.HostOutOfMemory;
            case VmOutcome.InvariantViolation:
                Log.InvariantViolation(_logger, message);
                return ExitCodes.InvariantViolation;
            case VmOutcome.Interrupted:
                Log.Interrupted(_logger, message);
                return ExitCodes.Interrupted;
            default:
                Log.InternalError(_logger, message);
                return ExitCodes.InternalError;
        }
    }
}
