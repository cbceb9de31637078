using Microsoft.Extensions.Logging;
using System.Diagnostics;
using ToyVmm.Cpu;
using ToyVmm.Devices;
using ToyVmm.Loader;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Report;
using ToyVmm.Vm;

namespace ToyVmm.Cli;

/// <summary>
/// <c>toyvmm run a.elf b.elf ...</c>: several VMs on one simulated host (GUEST-ABI 1.1
/// "Several VMs on one host"): one frame pool, one swap file, one reclaimer; VM n
/// runs the n-th file with the same options, its console lines prefixed <c>vm&lt;n&gt;: </c>.
/// A VM that ends leaves the others running; its grants are removed and its
/// attachments detached as it ends. The exit status is 0 when every VM ended with 0,
/// else the status of the lowest-numbered VM that did not.
/// </summary>
internal sealed class MultiVmRunner(RunOptions o, ILogger logger, GuestConsoleOutput console, InterruptWatchdog? watchdog)
{
    public int Run(CancellationToken stoppingToken)
    {
        var paths = o.AllGuests;
        var images = new ElfImage[paths.Count];
        for (int i = 0; i < paths.Count; i++)
        {
            string path = paths[i];
            Log.Starting(logger, path, SizeParser.Format(o.MemoryBytes), o.Vcpus);
            if (GuestFileCheck.NotRegular(path) is string notRegular)
            {
                Log.BadGuestFile(logger, path, notRegular);
                return ExitCodes.BadGuestFile;
            }
            try { images[i] = ElfLoader.LoadFile(path, o.MemoryBytes); }
            catch (ElfLoadException ex)
            {
                Log.BadGuestFile(logger, path, ex.Message);
                return ExitCodes.BadGuestFile;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Log.BadGuestFile(logger, path, $"cannot read the file: {ex.Message}");
                return ExitCodes.BadGuestFile;
            }
        }
        ulong framePool = RunOutputs.HostMemoryOf(o);
        ulong machine = (ulong)Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes);
        if (machine != 0 && framePool > machine)
        {
            Log.HostOutOfMemory(logger, $"the host's {SizeParser.Format(framePool)} frame pool is more than the machine's {SizeParser.Format(machine)}");
            return ExitCodes.HostOutOfMemory;
        }

        var config = new VmConfig(o.MemoryBytes, o.Vcpus, o.MaxInstructions > 0 ? o.MaxInstructions : long.MaxValue, PinVcpus: o.PinVcpus);
        long traceLimit = o.TracePath is null ? 0 : o.TraceLimit;
        var outputLock = new Lock();
        var consoles = new LinePrefixingStream[paths.Count];
        var memories = new List<HostBackedMemory>();
        var vms = new List<VirtualMachine>();
        SharedHost? shared = null;
        try
        {
            shared = new SharedHost(new HostMemoryOptions
            {
                HostMemoryBytes = framePool,
                SwapFilePath = o.SwapFile,
                // Enough swap for every VM's RAM plus slack.
                SwapBytes = o.MemoryBytes * (ulong)paths.Count + (16UL << 20),
            }, traceLimit, measure: true, logger);
            shared.Measurements.BindCurrentThread("VMM");
            for (int i = 0; i < paths.Count; i++)
            {
                var memory = new HostBackedMemory(shared, i, o.MemoryBytes, o.Vcpus, new GuestMemoryConfig(
                    HostMemoryBytes: framePool,
                    Protocol: o.Protocol,
                    Mmu: o.Mmu,
                    Check: o.Check,
                    PageOut: o.PageOut,
                    TraceLimit: traceLimit,
                    // One generator per VM: the same seed gives the same choices, and VMs differ.
                    Seed: unchecked((int)o.Seed ^ (int)(o.Seed >> 32)) + i), logger);
                memories.Add(memory);
                memory.Measurements.BindCurrentThread("VMM");
                consoles[i] = new LinePrefixingStream(console.Stream, outputLock, i);
                vms.Add(VirtualMachine.Create(config, images[i], consoles[i], _ => memory.Memory, logger, memory.Measurements));
            }
        }
        catch (Exception ex) when (ex is OutOfMemoryException or HostFailureException or SwapFileException or HostMemoryException
                                       or IOException or UnauthorizedAccessException or ArgumentException)
        {
            foreach (var vm in vms) vm.Dispose();
            foreach (var m in memories) m.Dispose();
            shared?.Dispose();
            return ex switch
            {
                OutOfMemoryException => Fail(ExitCodes.HostOutOfMemory, () => Log.HostOutOfMemory(logger, $"cannot allocate the host's {SizeParser.Format(framePool)} frame pool or {SizeParser.Format(o.MemoryBytes)} of guest RAM")),
                HostFailureException => Fail(ExitCodes.HostFailure, () => Log.HostFailure(logger, $"{HostFailureCause.Describe(shared?.Host.Stats)} ({ex.Message})")),
                SwapFileException or ArgumentException => Fail(ExitCodes.Usage, () => Log.CannotBuild(logger, ex.Message)),
                HostMemoryException => Fail(ExitCodes.HostOutOfMemory, () => Log.HostOutOfMemory(logger, ex.Message)),
                _ => Fail(ExitCodes.VmError, () => Log.VmError(logger, $"cannot set up the host: {ex.Message}")),
            };
        }

        // As one VM's run does: warn when the VMs' RAM together is more than the shared host can hold.
        if (SwapOvercommit.Warning(o.MemoryBytes * (ulong)paths.Count, (ulong)shared.Host.FrameCount << 12, shared.Host.Options.SwapBytes,
                shared.Host.Swap.FileSystemAvailableBytes(), shared.Host.Swap.Folder) is string overcommit)
            Log.Overcommit(logger, overcommit);

        using (shared)
        {
            try
            {
                return RunAll(shared, memories, vms, consoles, stoppingToken);
            }
            finally
            {
                foreach (var vm in vms) vm.Dispose();
                foreach (var m in memories) m.Dispose();
            }
        }
    }

    private static int Fail(int status, Action log)
    {
        log();
        return status;
    }

    private int RunAll(SharedHost shared, List<HostBackedMemory> memories, List<VirtualMachine> vms, LinePrefixingStream[] consoles, CancellationToken stop)
    {
        for (int i = 0; i < vms.Count; i++)
        {
            var vm = vms[i];
            if (memories[i].Checker is { } checker)
            {
                checker.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
                checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, ViolationReport.Format(v));
            }
            vm.Devices.Console.Failed += f => vm.Stop(VmOutcome.ConsoleFailed, f.Reason);
        }
        var results = new VmResult[vms.Count];
        var walls = new double[vms.Count];
        var wall = Stopwatch.StartNew();
        var threads = new Thread[vms.Count];
        for (int i = 0; i < vms.Count; i++)
        {
            int index = i;
            threads[i] = new Thread(() =>
            {
                try
                {
                    results[index] = vms[index].Run(stop);
                }
                catch (Exception ex)
                {
                    results[index] = new VmResult(VmOutcome.InternalError, 0, $"{ex.GetType().Name}: {ex.Message}", 0);
                }
                walls[index] = wall.Elapsed.TotalSeconds;
                // The VM has ended; the others go on without its grants and attachments.
                memories[index].StopBackground();
                if (memories[index].Grants is { } grants) grants.Table.VmEnded(grants);
                consoles[index].EndOfOutput();
            })
            { Name = $"toyvmm-vm{index}", IsBackground = true };
            threads[i].Start();
        }
        using (ProgressLine.StartIfTerminal(() => Live(shared, memories), o.Quiet))
            foreach (var t in threads) t.Join();
        watchdog?.Disarm();
        wall.Stop();
        shared.StopBackground();

        var statuses = new int[vms.Count];
        for (int i = 0; i < vms.Count; i++)
        {
            var c = vms[i].Devices.Counters;
            Log.Ended(logger, $"vm{i}: {results[i].Outcome}", results[i].GuestStatus, results[i].InstructionsRetired,
                vms[i].Devices.Console.BytesWritten, c.UnknownPortIn, c.UnknownPortOut, c.Hypercalls, c.UnknownHypercalls);
            statuses[i] = VmRunner.ToExitCode(logger, results[i], shared.Host.Stats, vms[i].Devices.Console.Failure, memories[i].PinnedFrames, $"vm{i}: ");
        }
        int deciding = Array.FindIndex(statuses, s => s != 0);
        int status = deciding < 0 ? 0 : statuses[deciding];

        var outputs = new RunOutputs(o, logger);
        if (!outputs.Wanted) return status;
        var perVm = new List<VmRunFigures>();
        for (int i = 0; i < vms.Count; i++)
        {
            memories[i].Measurements.EndRun();
            var checker = memories[i].Checker;
            perVm.Add(new VmRunFigures(i, memories[i].Measurements.Snapshot(), new RunFacts
            {
                ExitStatus = statuses[i],
                Outcome = results[i].Outcome.ToString(),
                GuestPath = o.AllGuests[i],
                Vcpus = o.Vcpus,
                Instructions = results[i].InstructionsRetired,
                WallSeconds = walls[i],
                Settings = RunOutputs.Settings(o),
                Checker = checker is null ? CheckerFacts.Off
                    : new CheckerFacts(true, checker.ViolationCount, checker.FirstViolation is { } first ? ViolationReport.Format(first) : null),
            }));
        }
        shared.Measurements.EndRun();
        return outputs.WriteSeveral(shared, memories, perVm, status,
            deciding < 0 ? results[0].Outcome.ToString() : results[deciding].Outcome.ToString(), wall.Elapsed.TotalSeconds);
    }

    private static LiveCounters Live(SharedHost shared, List<HostBackedMemory> memories)
    {
        long instructions = 0, faults = 0, invalidations = 0, pagedOut = shared.Measurements.Live().PagesPagedOut;
        long free = shared.Host.FreeFrames;
        foreach (var m in memories)
        {
            var f = m.Measurements.Live();
            instructions += f.Instructions;
            faults += f.Faults;
            invalidations += f.Invalidations;
            pagedOut += f.PagesPagedOut;
        }
        return new LiveCounters(instructions, faults, invalidations, pagedOut, free);
    }
}

/// <summary>One VM's snapshot and facts, for the outputs of a run of several VMs.</summary>
public sealed record VmRunFigures(int Index, ToyVmm.Mmu.Metrics.MeasurementSnapshot Snapshot, RunFacts Facts);
