using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ToyVmm.Cpu;
using ToyVmm.Devices;
using ToyVmm.Loader;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Vm;

/// <summary>
/// One VM: guest memory with the guest loaded and the boot structures built, its
/// devices, and its vCPUs, each on a dedicated thread.
/// </summary>
/// <remarks>
/// Life cycle: <c>Create</c> (load, build) --&gt; <see cref="Run"/> (once: threads run
/// until every vCPU has halted or one event ends the VM) --&gt; <see cref="Dispose"/>.
/// <para>
/// The first event that ends the VM wins (<see cref="_result"/> is set once with a
/// compare-exchange): the exit port, a VM error, the instruction limit, an internal
/// error or cancellation. Whoever sets it then asks every vCPU to stop through its
/// <see cref="VcpuLink"/>; vCPUs that see the request return StopRequested at their
/// next block boundary. No lock: the only shared state is <see cref="_result"/>
/// and the per-vCPU slots each thread writes once before it ends (read after Join).
/// </para>
/// </remarks>
public sealed class VirtualMachine : IDisposable
{
    private const int VcpuThreadStackBytes = 8 << 20;

    private readonly VmMemory _memory;
    private readonly Action<Gpa, ulong> _contentsReplaced;
    private readonly ElfImage _image;
    private readonly ILogger _logger;
    private readonly VcpuLink[] _links;
    private readonly long[] _retired;
    private readonly MeasurementHub? _measurements;
    private VmResult? _result;   // set once, by compare-exchange
    private int _state;          // 0 created, 1 running/ran, 2 disposed

    private VirtualMachine(VmConfig config, BootLayout layout, VmMemory memory, ElfImage image, Stream consoleOutput, ILogger logger,
        MeasurementHub? measurements)
    {
        _measurements = measurements;
        Config = config;
        Layout = layout;
        _memory = memory;
        _image = image;
        _logger = logger;
        _links = new VcpuLink[config.VcpuCount];
        _retired = new long[config.VcpuCount];
        Devices = new VmDevices(memory.Access, memory.Management, new GuestConsole(consoleOutput), OnExitPort, measurements, memory.Grants);
        // Decoded code is derived from guest bytes: a change behind the vCPUs' back makes it stale.
        _contentsReplaced = (start, bytes) => CodeCache.ContentsReplaced(memory.Access, start, bytes);
        memory.Management.ContentsReplaced += _contentsReplaced;
    }

    public VmConfig Config { get; }
    public BootLayout Layout { get; }
    public VmDevices Devices { get; }
    /// <summary>What the vCPUs translate through.</summary>
    public IGuestMemory Memory => _memory.Access;

    /// <summary>
    /// Builds a VM: checks the layout (refuses a vCPU count whose stacks do not fit),
    /// allocates guest memory, copies every segment to its p_paddr (zeroing p_filesz..p_memsz),
    /// and builds the GDT and identity page tables in the reserved top.
    /// </summary>
    /// <param name="memoryFactory">Guest memory for a RAM size; <see cref="VmMemory.Flat"/> when null.</param>
    /// <exception cref="ArgumentException">Layout impossible (message says why).</exception>
    /// <param name="measurements">Where the PHASE hypercall switches phases and the vCPUs' instructions are counted per phase.</param>
    /// <exception cref="OutOfMemoryException">The host cannot provide guest RAM.</exception>
    public static VirtualMachine Create(VmConfig config, ElfImage image, Stream consoleOutput,
        Func<ulong, VmMemory>? memoryFactory = null, ILogger? logger = null, MeasurementHub? measurements = null)
    {
        var layout = BootLayout.Create(config.RamBytes, config.VcpuCount);
        if (image.Segments[^1].End.Value > layout.ReservedStart.Value)
            throw new ArgumentException($"the guest's {image.Segments[^1]} reaches into the reserved top at 0x{layout.ReservedStart.Value:x}");
        var memory = (memoryFactory ?? VmMemory.Flat)(config.RamBytes);
        try
        {
            using var writer = new GuestPhysicalWriter(memory.Access);
            foreach (var segment in image.Segments)
            {
                writer.Write(segment.Start, image.FileBytes(segment));
                writer.Zero(segment.Start.Add(segment.FileSize), segment.MemorySize - segment.FileSize);
            }
            BootState.BuildTables(writer, layout);
            return new VirtualMachine(config, layout, memory, image, consoleOutput, logger ?? NullLogger.Instance, measurements);
        }
        catch
        {
            memory.Owner?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs every vCPU on its own thread until the VM ends; returns how it ended.
    /// Cancelling <paramref name="cancellation"/> stops all vCPUs (<see cref="VmOutcome.Interrupted"/>).
    /// </summary>
    public VmResult Run(CancellationToken cancellation = default)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
            throw new InvalidOperationException("a VM runs once");

        for (int i = 0; i < _links.Length; i++)
        {
            _links[i] = new VcpuLink(i);
            _memory.Access.AttachVcpu(_links[i]);
        }

        // --pin-vcpus: the CPUs this thread may run on, which the vCPU threads inherit; each
        // pins itself to one of them, round-robin by index. The barrier aimed at a CPU is
        // registered for here, before any vCPU runs (TargetedBarrier).
        int[] cpus = [];
        if (Config.PinVcpus)
        {
            cpus = VcpuThreadAffinity.AllowedCpus(out string? why);
            if (cpus.Length == 0) ReportPinning($"{why}; the vCPUs run unpinned");
            else if (!TargetedBarrier.IsAvailable) ReportPinning($"{TargetedBarrier.Unavailable}; TLB shootdowns use the process-wide barrier");
        }

        // Every thread builds its vCPU and sets the entry state, then waits here so that
        // all vCPUs start at e_entry together (GUEST-ABI.md).
        using var startGate = new ManualResetEventSlim(false);
        var threads = new Thread[_links.Length];
        for (int i = 0; i < threads.Length; i++)
        {
            int index = i;
            threads[i] = new Thread(() => VcpuThread(index, startGate, cpus), VcpuThreadStackBytes)
            {
                Name = $"vcpu{index}",
                IsBackground = true,
            };
            threads[i].Start();
        }
        using (cancellation.Register(() => Finish(new VmResult(VmOutcome.Interrupted, 0, "interrupted", 0))))
        {
            startGate.Set();
            foreach (var t in threads) t.Join();
        }
        _measurements?.EndRun();
        Devices.Console.Flush();

        long retired = _retired.Sum();
        var result = Volatile.Read(ref _result) ?? new VmResult(VmOutcome.AllHalted, 0, null, 0);
        return result with { InstructionsRetired = retired };
    }

    private void VcpuThread(int index, ManualResetEventSlim startGate, int[] cpus)
    {
        Vcpu? vcpu = null;
        try
        {
            vcpu = new Vcpu(index, _memory.Access, _links[index], Devices);
            vcpu.TierThreshold = Config.TierThreshold;   // VM-wide; before any block is decoded
            BootState.ApplyEntryState(vcpu, Layout, _image.Entry);
            if (_measurements is not null)
            {
                // Read on this thread (its own PHASE, its detach) the count is exact; read from
                // another vCPU's PHASE it lags by up to a chain of blocks (the hub keeps it monotonic).
                var counted = vcpu;
                int thread = Environment.CurrentManagedThreadId;
                _measurements.BindCurrentThreadToVcpu(index);
                _measurements.AttachVcpuCounter(index, () => Environment.CurrentManagedThreadId == thread
                    ? counted.InstructionsRetiredBeforeCurrent : counted.InstructionsRetired);
            }
            if (Config.VcpuNice > 0) VcpuThreadNice.TryApplyToCurrentThread(Config.VcpuNice);
            if (cpus.Length > 0) PinCurrentThread(index, cpus[index % cpus.Length]);
            startGate.Wait();
            var exit = vcpu.Run(Config.InstructionLimit);
            if (vcpu.MovedOffPinnedCpu is int moved)
                ReportPinning($"vCPU {index}'s thread was found on CPU {moved}, not its CPU {cpus[index % cpus.Length]} " +
                              "(its affinity was changed from outside: taskset, a cpuset, a CPU taken offline); it ran with the process-wide barrier from then on");
            Log.VcpuExited(_logger, index, exit.Kind, exit.Message ?? "");
            if (index == 0 && vcpu.TierThreshold >= 0)
            {
                var t = vcpu.TierStats;
                Log.TierCounters(_logger, t.BlocksCompiled, t.OpsCompiled, t.Declined, t.Freed, t.Live);
            }
            switch (exit.Kind)
            {
                case VcpuExitKind.Halted:
                case VcpuExitKind.StopRequested:
                    break;
                case VcpuExitKind.InstructionLimit:
                    Finish(new VmResult(VmOutcome.InstructionLimit, 0,
                        $"vCPU {index} reached the instruction limit ({Config.InstructionLimit})", 0));
                    break;
                case VcpuExitKind.VmError:
                    Finish(new VmResult(VmOutcome.VmError, 0, $"vCPU {index}: {exit.Message ?? "VM error"}", 0));
                    break;
                case VcpuExitKind.HostFailure:
                    Finish(new VmResult(VmOutcome.HostFailure, 0, $"vCPU {index}: {exit.Message ?? "host failure"}", 0));
                    break;
                case VcpuExitKind.InternalError:
                    Finish(new VmResult(VmOutcome.InternalError, 0, $"vCPU {index}: {exit.Message ?? "internal error"}", 0));
                    break;
                default:
                    Finish(new VmResult(VmOutcome.InternalError, 0, $"vCPU {index}: unknown exit {exit.Kind}", 0));
                    break;
            }
        }
        catch (Exception ex)
        {
            Finish(new VmResult(VmOutcome.InternalError, 0,
                $"vCPU {index}: {ex.GetType().Name}: {ex.Message}", 0));
        }
        finally
        {
            _measurements?.DetachVcpuCounter(index);
            _retired[index] = vcpu?.InstructionsRetired ?? 0;
        }
    }

    /// <summary>vCPU thread, before it first enters guest mode: pin it to <paramref name="cpu"/> and say so on its link; unpinned when refused.</summary>
    private void PinCurrentThread(int index, int cpu)
    {
        if (VcpuThreadAffinity.TryPinCurrentThread(cpu) is string refused)
        {
            ReportPinning($"{refused}; vCPU {index} runs unpinned, with the process-wide barrier");
            return;
        }
        _links[index].SetPinnedCpu(cpu);
        Log.VcpuPinned(_logger, index, cpu);
    }

    private int _pinningReported;   // 0 until the first pinning problem is reported

    /// <summary>The first problem with --pin-vcpus is reported; the rest would say the same of other vCPUs.</summary>
    private void ReportPinning(string detail)
    {
        if (Interlocked.Exchange(ref _pinningReported, 1) == 0) Log.PinningDegraded(_logger, detail);
    }

    /// <summary>The vCPUs' links (null entries before <see cref="Run"/>).</summary>
    public IReadOnlyList<VcpuLink?> Links => _links;

    /// <summary>Ends the VM from outside (the invariant checker, a host failure): the first ending wins.</summary>
    public void Stop(VmOutcome outcome, string message) => Finish(new VmResult(outcome, 0, message, 0));

    private void OnExitPort(int vcpuIndex, int status) =>
        Finish(new VmResult(VmOutcome.ExitPort, status, $"vCPU {vcpuIndex} wrote exit status {status} to port 0xF4", 0));

    /// <summary>Records the event that ends the VM (the first one wins) and asks every vCPU to stop.</summary>
    private void Finish(VmResult result)
    {
        if (Interlocked.CompareExchange(ref _result, result, null) != null) return;
        foreach (var link in _links)
            link?.RequestStop();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _state, 2) == 2) return;
        _memory.Management.ContentsReplaced -= _contentsReplaced;
        _memory.Owner?.Dispose();
    }
}
