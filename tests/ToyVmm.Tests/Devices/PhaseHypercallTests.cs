using System.Text;
using ToyVmm.Loader;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Report;
using ToyVmm.Tests.Vm;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Devices;

/// <summary>The PHASE hypercall (GUEST-ABI 1.1): good and bad names, and figures split by phase.</summary>
public class PhaseHypercallTests
{
    private const ulong Ram = 16UL << 20;
    private const ulong Names = AsmGuest.Data;                 // where the guest puts its names
    private const ulong Buffer = 0x400000;                     // free RAM it fills, pages out and reads back
    private const int BufferPages = 8;
    private const long Einval = -22;

    /// <summary>Runs an assembled guest on host-backed memory with a measurement hub.</summary>
    private static (VmResult Result, MeasurementSnapshot Figures) Run(Action<Iced.Intel.Assembler> emit)
    {
        var image = AsmGuest.Build(emit, Ram);
        using var backing = new HostBackedMemory(Ram, 1, new GuestMemoryConfig(HostMemoryBytes: Ram, TraceLimit: 100_000));
        using var vm = VirtualMachine.Create(new VmConfig(Ram, 1, 50_000_000), image, new MemoryStream(),
            _ => backing.Memory, measurements: backing.Measurements);
        using var hang = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        var result = vm.Run(hang.Token);
        backing.StopBackground();
        return (result, backing.Snapshot());
    }

    /// <summary>Stores <paramref name="bytes"/> at <paramref name="at"/> (clobbers RAX, RDI).</summary>
    private static void Store(Iced.Intel.Assembler a, ulong at, byte[] bytes)
    {
        a.mov(rdi, at);
        for (int i = 0; i < bytes.Length; i++)
        {
            a.mov(al, bytes[i]);
            a.mov(__byte_ptr[rdi + i], al);
        }
    }

    /// <summary>PHASE with the name at <paramref name="at"/>; exits with <paramref name="status"/> unless RAX is <paramref name="expected"/>.</summary>
    private static void Phase(Iced.Intel.Assembler a, ulong at, long expected, byte status)
    {
        a.mov(eax, 0x110u);
        a.mov(rbx, at);
        a.vmcall();
        a.ExpectEqual(rax, unchecked((ulong)expected), status);
    }

    private static byte[] Z(string s) => [.. Encoding.ASCII.GetBytes(s), 0];

    [Fact]
    public void Phase_BadNames_ReturnEinvalAndSwitchNothing()
    {
        var (result, figures) = Run(a =>
        {
            Store(a, Names, [0]);                                      // empty
            Phase(a, Names, Einval, 1);
            Store(a, Names, Encoding.ASCII.GetBytes(new string('x', 64)).Append((byte)0).ToArray());   // 64 characters
            Phase(a, Names, Einval, 2);
            Store(a, Names, Z("tab\there"));                           // not printable
            Phase(a, Names, Einval, 3);
            Store(a, Names, [(byte)'a', 0x80, 0]);                     // not ASCII
            Phase(a, Names, Einval, 4);
            Phase(a, Ram - 0x100000, Einval, 5);                       // in the VMM's reserved top
            Phase(a, Ram, Einval, 6);                                  // past RAM
            Phase(a, ulong.MaxValue, Einval, 7);
            a.mov(rdi, Ram - 0x100000 - 3);                            // runs into the reserved top before its NUL
            a.mov(__dword_ptr[rdi], 0x00636261u);
            Phase(a, Ram - 0x100000 - 3, Einval, 8);
            Store(a, Names, Z(new string('y', 63)));                   // 63 characters: the longest good name
            Phase(a, Names, 0, 9);
            a.Exit(0x55);
        });
        Assert.True(result.GuestStatus == 0x55, $"{result.Outcome} {result.GuestStatus} {result.Message}");
        Assert.Equal(["boot", new string('y', 63)], figures.Phases.Select(p => p.Name));
    }

    [Fact]
    public void Phase_FillPageOutVerify_SplitsTheFigures()
    {
        var (result, figures) = Run(a =>
        {
            Store(a, Names, Z("fill"));
            Store(a, Names + 0x100, Z("verify"));
            Phase(a, Names, 0, 1);
            for (int i = 0; i < BufferPages; i++)
            {
                a.mov(rdi, Buffer + (ulong)i * 0x1000);
                a.mov(__qword_ptr[rdi], i + 1);
            }
            a.mov(eax, 0x100u);                                        // PAGEOUT the buffer
            a.mov(rbx, Buffer);
            a.mov(ecx, (uint)(BufferPages * 0x1000));
            a.vmcall();
            a.ExpectEqual(rax, BufferPages, 2);
            Phase(a, Names + 0x100, 0, 3);
            for (int i = 0; i < BufferPages; i++)
            {
                a.mov(rdi, Buffer + (ulong)i * 0x1000);
                a.mov(rax, __qword_ptr[rdi]);
                a.ExpectEqual(rax, (ulong)i + 1, 4);
            }
            a.Exit(0x55);
        });
        Assert.True(result.GuestStatus == 0x55, $"{result.Outcome} {result.GuestStatus} {result.Message}");
        Assert.Equal(["boot", "fill", "verify"], figures.Phases.Select(p => p.Name));
        var (boot, fill, verify) = (figures.Phases[0], figures.Phases[1], figures.Phases[2]);
        Assert.True(fill.Faults[FaultKind.ZeroFill].TotalCount >= BufferPages);
        Assert.Equal(0, fill.Faults[FaultKind.SwapIn].TotalCount);
        Assert.Equal(BufferPages, verify.Faults[FaultKind.SwapIn].TotalCount);
        Assert.Equal(0, verify.Faults[FaultKind.ZeroFill].TotalCount);
        Assert.Equal(BufferPages, fill.PagesPagedOut);
        Assert.True(fill.Invalidations[InvalidateCause.PageOut].TotalCount >= 1);
        Assert.Equal(BufferPages, verify.SwapReads.TotalCount);
        Assert.True(boot.Faults.Values.Sum(h => h.TotalCount) > 0);    // loading the guest touched memory in boot
        // Every instruction is counted in exactly one phase, and each phase ran some.
        Assert.Equal(result.InstructionsRetired, figures.Total.Instructions);
        Assert.All(figures.Phases, p => Assert.True(p.Instructions > 0, $"{p.Name}: {p.Instructions}"));
        Assert.Equal(figures.Total.Faults[FaultKind.SwapIn].TotalCount, figures.Phases.Sum(p => p.Faults[FaultKind.SwapIn].TotalCount));
        // The timeline shows the phases in order on their track.
        var trace = figures.Trace!;
        var phases = trace.Events.Where(e => e.Kind == TraceKind.Phase).Select(e => trace.PhaseNames[e.C]);
        Assert.Equal(["boot", "fill", "verify"], phases);
        Assert.Contains(trace.Events, e => e.Kind == TraceKind.Fault && trace.Tracks[e.Track].Name == "vCPU 0" && e.B == (ulong)FaultKind.SwapIn);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Phase_PhasesGuest_ZeroFillsInFillAndSwapsInInVerify(int vcpus)
    {
        var image = ElfLoader.LoadFile(GuestFiles.Elf("phases"), Ram);
        long pages = (long)(Ram / 2 / 4096);   // guest/progs/phases.c uses half of RAM
        using var backing = new HostBackedMemory(Ram, vcpus, new GuestMemoryConfig(HostMemoryBytes: Ram + Ram / 8, Check: true, TraceLimit: 1_000_000));
        using var vm = VirtualMachine.Create(new VmConfig(Ram, vcpus, 2_000_000_000), image, new MemoryStream(),
            _ => backing.Memory, measurements: backing.Measurements);
        backing.Checker!.WatchVcpus(() => [.. vm.Links.OfType<VcpuLink>()]);
        using var hang = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var result = vm.Run(hang.Token);
        backing.StopBackground();
        var s = backing.Snapshot();

        Assert.True(result.IsNormalExit && result.GuestStatus == 0, $"{result.Outcome}: {result.Message}");
        Assert.Equal(["boot", "fill", "pageout", "verify"], s.Phases.Select(p => p.Name));
        var fill = s.Phases[1];
        var pageout = s.Phases[2];
        var verify = s.Phases[3];
        Assert.True(fill.Faults[FaultKind.ZeroFill].TotalCount >= pages, $"fill: {fill.Faults[FaultKind.ZeroFill].TotalCount} zero-fills");
        Assert.Equal(0, fill.Faults[FaultKind.SwapIn].TotalCount);
        Assert.True(pageout.PagesPagedOut >= pages, $"pageout: {pageout.PagesPagedOut} pages");
        Assert.True(pageout.Invalidations[InvalidateCause.PageOut].TotalCount > 0);
        long back = verify.Faults[FaultKind.SwapIn].TotalCount + verify.Faults[FaultKind.SwapCacheHit].TotalCount;
        Assert.True(back >= pages, $"verify: {back} swap-ins");
        Assert.Equal(0, verify.Faults[FaultKind.ZeroFill].TotalCount);
        // Counts add up: each kind's total is the sum over the phases; the instructions too.
        foreach (var kind in Enum.GetValues<FaultKind>())
            Assert.Equal(s.Total.Faults[kind].TotalCount, s.Phases.Sum(p => p.Faults[kind].TotalCount));
        Assert.Equal(result.InstructionsRetired, s.Total.Instructions);
        // Nothing dropped within the budget: the timeline has a slice for every fault.
        Assert.Equal(0, s.Trace!.DroppedEvents);
        Assert.Equal(s.Total.Faults.Values.Sum(h => h.TotalCount), s.Trace.Events.Count(e => e.Kind == TraceKind.Fault));

        // The writers take the snapshot as it is: the report, the table and the trace file.
        var report = RunReport.Build(s, new RunFacts
        {
            ExitStatus = 0, GuestPath = "phases.elf", Vcpus = vcpus, Instructions = result.InstructionsRetired,
            WallSeconds = s.Total.WallSeconds, Settings = [],
        });
        Assert.Equal(["boot", "fill", "pageout", "verify"], report.Phases.Select(p => p.Name));
        Assert.Contains("fill", EndOfRunTable.Render(report));
        using var file = new MemoryStream();
        TraceFileWriter.Write(s.Trace, file, []);
        using var json = System.Text.Json.JsonDocument.Parse(file.ToArray());
        var names = json.RootElement.GetProperty("traceEvents").EnumerateArray()
            .Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .Select(e => e.GetProperty("args").GetProperty("name").GetString()).ToList();
        Assert.Contains("vCPU 0", names);
        Assert.Contains("phases", names);
    }
}
