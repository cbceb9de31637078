using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using System.Diagnostics;
using ToyVmm.Cpu;
using ToyVmm.Devices;
using ToyVmm.Loader;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Report;
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
    private readonly InterruptWatchdog? _watchdog;   // null in tests that run the VMM in-process

    public VmRunner(IOptions<RunOptions> options, ILogger<VmRunner> logger, IHostApplicationLifetime lifetime,
        ExitStatus exitStatus, GuestConsoleOutput console, InterruptWatchdog? watchdog = null)
    {
        _watchdog = watchdog;
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

    /// <summary>
    /// Test seam: wraps the host-backed guest memory the VM runs on (to make the interpreter or a
    /// device fail where no guest can), so that the VMM's handling of its own failures
    /// is tested end to end.
    /// </summary>
    internal Func<VmMemory, VmMemory>? WrapMemory { get; init; }

    /// <summary>Loads and runs the guest; returns the process exit status.</summary>
    public int RunVm(CancellationToken stoppingToken)
    {
        var o = _options;
        if (o.MoreGuests.Count > 0)
            return new MultiVmRunner(o, _logger, _console, _watchdog).Run(stoppingToken);
        Log.Starting(_logger, o.GuestPath, SizeParser.Format(o.MemoryBytes), o.Vcpus);
        ElfImage image;
        if (GuestFileCheck.NotRegular(o.GuestPath) is string notRegular)
        {
            Log.BadGuestFile(_logger, o.GuestPath, notRegular);
            return ExitCodes.BadGuestFile;
        }
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
        // Host-backed guest RAM is bounded by the swap space, not the machine: untouched
        // pages cost nothing. Only flat memory needs all of it up front.
        if (hostBytes != 0 && o.FlatMemory && o.MemoryBytes > hostBytes)
        {
            Log.HostOutOfMemory(_logger, $"--memory {SizeParser.Format(o.MemoryBytes)} is more than the machine's {SizeParser.Format(hostBytes)}");
            return ExitCodes.HostOutOfMemory;
        }
        if (hostBytes != 0 && !o.FlatMemory && o.HostMemoryBytes > hostBytes)
        {
            Log.HostOutOfMemory(_logger, $"--host-memory {SizeParser.Format(o.HostMemoryBytes)} is more than the machine's {SizeParser.Format(hostBytes)}");
            return ExitCodes.HostOutOfMemory;
        }

        ulong framePoolBytes = o.HostMemoryBytes != 0 ? o.HostMemoryBytes : o.MemoryBytes + (o.MemoryBytes >> 3);
        var config = new VmConfig(o.MemoryBytes, o.Vcpus, o.MaxInstructions > 0 ? o.MaxInstructions : long.MaxValue,
            TierThreshold: o.Cpu == CpuMode.Tiered ? o.TierThreshold : -1, PinVcpus: o.PinVcpus);
        HostBackedMemory? backing = null;
        // Flat memory has no host to measure, but phases and instructions are still counted.
        MeasurementHub? flatHub = null;
        VirtualMachine vm;
        try
        {
            if (!o.FlatMemory)
                backing = new HostBackedMemory(o.MemoryBytes, o.Vcpus, new GuestMemoryConfig(
                    HostMemoryBytes: framePoolBytes,
                    SwapFilePath: o.SwapFile,
                    Protocol: o.Protocol,
                    Mmu: o.Mmu,
                    Check: o.Check,
                    // The --pageout schedules, with --pageout-interval already among them.
                    PageOut: o.PageOut,
                    TraceLimit: o.TracePath is null ? 0 : o.TraceLimit,
                    // --seed folded to the int System.Random takes; the default 1 stays 1.
                    Seed: unchecked((int)o.Seed ^ (int)(o.Seed >> 32))), _logger);
            if (backing is null) flatHub = new MeasurementHub(o.Vcpus, o.TracePath is null ? 0 : o.TraceLimit);
            // This thread writes the guest image and the boot tables: its faults get a named track.
            (backing?.Measurements ?? flatHub)!.BindCurrentThread("VMM");
            vm = VirtualMachine.Create(config, image, _console.Stream,
                backing is null ? null : _ => WrapMemory?.Invoke(backing.Memory) ?? backing.Memory, logger: _logger, measurements: backing?.Measurements ?? flatHub);
        }
        catch (OutOfMemoryException)
        {
            backing?.Dispose();
            flatHub?.Dispose();
            // Name what was being allocated: the frame pool (--host-memory) when there is a host.
            Log.HostOutOfMemory(_logger, o.FlatMemory || backing is not null
                ? $"cannot allocate {SizeParser.Format(o.MemoryBytes)} of guest RAM"
                : $"cannot allocate the host's {SizeParser.Format(framePoolBytes)} frame pool ({(o.HostMemoryBytes != 0 ? "--host-memory" : "guest RAM + 1/8")})");
            return ExitCodes.HostOutOfMemory;
        }
        catch (HostFailureException ex)
        {
            backing?.Dispose();
            flatHub?.Dispose();
            Log.HostFailure(_logger, $"{HostFailureCause.Describe(backing?.Host.Stats, backing?.PinnedFrames ?? 0)} ({ex.Message})");
            return ExitCodes.HostFailure;
        }
        catch (SwapFileException ex)
        {
            backing?.Dispose();
            flatHub?.Dispose();
            Log.CannotBuild(_logger, ex.Message);
            return ExitCodes.Usage;
        }
        catch (HostMemoryException ex)
        {
            backing?.Dispose();
            flatHub?.Dispose();
            Log.HostOutOfMemory(_logger, ex.Message);
            return ExitCodes.HostOutOfMemory;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            backing?.Dispose();
            flatHub?.Dispose();
            Log.VmError(_logger, $"cannot set up the host: {ex.Message}");
            return ExitCodes.VmError;
        }
        catch (ArgumentException ex)
        {
            backing?.Dispose();
            flatHub?.Dispose();
            Log.CannotBuild(_logger, ex.Message);
            return ExitCodes.Usage;
        }
        catch
        {
            // Anything else is a bug, reported by ExecuteAsync as an internal error: the
            // host's threads and its swap file must not outlive the attempt.
            backing?.Dispose();
            flatHub?.Dispose();
            throw;
        }

        if (backing is not null && SwapOvercommit.Warning(o.MemoryBytes, (ulong)backing.Host.FrameCount << 12, backing.Host.Options.SwapBytes,
                backing.Host.Swap.FileSystemAvailableBytes(), backing.Host.Swap.Folder) is string overcommit)
            Log.Overcommit(_logger, overcommit);

        using (backing)
        using (flatHub)
        using (vm)
        {
            var hub = backing?.Measurements ?? flatHub!;
            if (backing?.Checker is { } checker)
            {
                checker.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
                checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, ViolationReport.Format(v));
            }
            vm.Devices.Console.Failed += f => vm.Stop(VmOutcome.ConsoleFailed, f.Reason);
            var wall = Stopwatch.StartNew();
            VmResult result;
            using (ProgressLine.StartIfTerminal(() => Live(hub), o.Quiet))
                result = vm.Run(stoppingToken);
            _watchdog?.Disarm();
            wall.Stop();
            backing?.StopBackground();
            hub.EndRun();
            var c = vm.Devices.Counters;
            Log.Ended(_logger, result.Outcome.ToString(), result.GuestStatus, result.InstructionsRetired,
                vm.Devices.Console.BytesWritten, c.UnknownPortIn, c.UnknownPortOut, c.Hypercalls, c.UnknownHypercalls);
            int status = ToExitCode(_logger, result, backing?.Host.Stats, vm.Devices.Console.Failure, backing?.PinnedFrames ?? 0);
            var outputs = new RunOutputs(o, _logger);
            if (!outputs.Wanted) return status;
            var snapshot = hub.Snapshot();
            var facts = new RunFacts
            {
                ExitStatus = status,
                Outcome = result.Outcome.ToString(),
                GuestPath = o.GuestPath,
                Vcpus = o.Vcpus,
                Instructions = result.InstructionsRetired,
                WallSeconds = wall.Elapsed.TotalSeconds,
                Settings = RunOutputs.Settings(o),
                Host = backing is null ? null : RunOutputs.HostCountersOf(backing, snapshot),
                Shadow = backing?.ShadowCounts is { } shadow ? [.. shadow.ByName()] : null,
                Checker = backing?.Checker is { } ch
                    ? new CheckerFacts(true, ch.ViolationCount, ch.FirstViolation is { } first ? ViolationReport.Format(first) : null)
                    : CheckerFacts.Off,
            };
            return outputs.Write(snapshot, facts);
        }
    }

    private static LiveCounters Live(MeasurementHub hub)
    {
        var f = hub.Live();
        return new LiveCounters(f.Instructions, f.Faults, f.Invalidations, f.PagesPagedOut, f.FreeFrames);
    }


    /// <summary>
    /// The exit status of one VM's run, logging the VMM's line for it; <paramref name="who"/>
    /// (<c>vm1: </c>) names the VM when several ran.
    /// </summary>
    internal static int ToExitCode(ILogger _logger, VmResult result, HostStats? stats, ConsoleFailure? console, long pinnedFrames, string who = "")
    {
        string message = who + (result.Message ?? result.Outcome.ToString());
        // The console failing ends the run, or spoils a normal end (the last flush failed).
        if (console != null && (result.IsNormalExit || result.Outcome == VmOutcome.ConsoleFailed))
        {
            if (console.PipeClosed) return ExitCodes.OutputClosed;   // quiet, like any writer whose reader left
            Log.ConsoleFailed(_logger, who + console.Reason);
            return ExitCodes.ConsoleError;
        }
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
            case VmOutcome.HostFailure:
                Log.HostFailure(_logger, $"{HostFailureCause.Describe(stats, pinnedFrames)} ({message})");
                return ExitCodes.HostFailure;
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
