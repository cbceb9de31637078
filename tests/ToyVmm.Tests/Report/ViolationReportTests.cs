using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Report;
using ToyVmm.Vm;
using Xunit;
using Xunit.Abstractions;

namespace ToyVmm.Tests.Report;

public class ViolationReportTests(ITestOutputHelper output)
{
    [Fact]
    public void Format_StructuredViolation_OneFactPerLineNamingVcpus()
    {
        var v = new MmuViolation("a host frame was freed before vCPU 1 flushed its TLB", new Hfn(0x1a2), new Gpa(0x12000), "ignored")
        {
            Vcpu = 1,
            Events =
            [
                new(1203, "Install", new Hfn(0x1a2), new Gpa(0x12000), 14, 1),
                new(1207, "Zap", new Hfn(0x1a2), new Gpa(0x12000), 9, null),
                new(1208, "FrameFree", new Hfn(0x1a2), null, 9, null),
                new(1209, "Violation", new Hfn(0x1a2), new Gpa(0x12000), 21, null),
            ],
        };
        string text = ViolationReport.Format(v, new Dictionary<int, string> { [9] = "page-out driver" });
        output.WriteLine(text);
        var lines = text.TrimEnd('\n').Split('\n');
        Assert.Equal("MMU invariant violated: a host frame was freed before vCPU 1 flushed its TLB", lines[0]);
        Assert.Equal("  vCPU:        1", lines[1]);
        Assert.Equal("  host frame:  hfn:0x1a2", lines[2]);
        Assert.Equal("  guest page:  gpa:0x12000", lines[3]);
        Assert.EndsWith("vCPU 1", lines[5]);
        Assert.EndsWith("page-out driver (thread 9)", lines[6]);
        Assert.EndsWith("thread 21", lines[8]);
        Assert.Equal(9, lines.Length);
        Assert.All(lines, l => Assert.True(l.Length < 120, l));
        // Columns line up: every event's frame starts at the same place.
        Assert.Single(lines.Skip(5).Select(l => l.IndexOf("hfn:", StringComparison.Ordinal)).Distinct());
    }

    [Fact]
    public void Format_ViolationWithoutEvents_FallsBackToTheHistoryText()
    {
        var v = new MmuViolation("rule", new Hfn(1), new Gpa(0x1000), "  last events: #1 Install");
        string text = ViolationReport.Format(v);
        Assert.DoesNotContain("vCPU:", text);
        Assert.EndsWith("  last events: #1 Install\n", text);
    }

    private static unsafe TranslateStatus Translate(EptMmu mmu, VcpuLink link, Gpa gpa) =>
        mmu.Translate(link, gpa, AccessKind.Write, out _);

    [Fact]
    public void Checker_FrameFreedBeforeVcpuFlushed_ViolationNamesTheVcpuOfEachEvent()
    {
        const ulong ram = 16UL << 20;
        using var backing = new HostBackedMemory(ram, 2, new GuestMemoryConfig(ram, Check: true));
        var mmu = (EptMmu)backing.Mmu;
        var checker = backing.Checker!;
        VcpuLink[] links = [new VcpuLink(0), new VcpuLink(1)];
        foreach (var l in links) mmu.AttachVcpu(l);
        checker.WatchVcpus(() => links);
        var gpa = new Gpa(0x200000);
        // vCPU 1's thread installs the page and stays in guest mode.
        var vcpuThread = new Thread(() =>
        {
            links[1].EnterGuest();
            Assert.Equal(TranslateStatus.Ok, Translate(mmu, links[1], gpa));
            if (links[1].Mode != VcpuMode.InGuest) links[1].EnterGuest();
        });
        vcpuThread.Start();
        Assert.True(vcpuThread.Join(TimeSpan.FromSeconds(20)));
        // The host zaps it and frees the frame although vCPU 1 never flushed.
        var zapped = new EptEntry(mmu.Table.Lookup(gpa.PageNumber).Raw);
        checker.OnZap(mmu.Host, new ZappedEntry(gpa, zapped.Frame, zapped.Vcpus));
        links[1].RequestFlush(gpa.PageNumber, gpa.PageNumber);
        checker.OnFrameFree(zapped.Frame);

        var v = checker.FirstViolation;
        Assert.NotNull(v);
        Assert.Equal(1, v.Vcpu);
        var install = Assert.Single(v.Events, e => e.Kind == "Install");
        Assert.Equal(1, install.Vcpu);
        Assert.Equal(gpa, install.Page);
        var free = Assert.Single(v.Events, e => e.Kind == "FrameFree");
        Assert.Null(free.Vcpu);
        Assert.Equal(Environment.CurrentManagedThreadId, free.Thread);
        Assert.Contains("vCPU 1", v.History);

        string text = ViolationReport.Format(v);
        output.WriteLine(text);
        Assert.True(text.Split('\n').Length >= 6);
        Assert.Contains("  vCPU:        1\n", text);
    }
}
