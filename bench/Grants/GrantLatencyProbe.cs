using System.Diagnostics;
using HdrHistogram;
using ToyVmm.Bench.Secondary;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Host;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;

namespace ToyVmm.Bench.Grants;

/// <summary>
/// Per-operation latency percentiles of grants (bench/RESULTS.md "Grants: recall,
/// attacher faults, cost per attacher"), on one simulated host with two VMs:
/// <list type="number">
/// <item>the recall of one page and of a 2 MiB range of a grant (the owner's invalidate
/// start to end, which recalls the attacher) with 0, 1 and 2 of the attacher's vCPUs
/// running over the attached range, beside a KVM-style invalidation of the same number
/// of the attacher's own pages with its vCPUs running over them;</item>
/// <item>a secondary fault of the attacher through the grant (PFN table hit, and miss:
/// get_user_pages on the owner) beside the owner's own fault of a page the host has;</item>
/// <item>what a recall of a 2 MiB range and of one page costs with 1, 2, 4 and 8 attachments.</item>
/// </list>
/// Run: <c>ToyVmm.Bench grant-latency [samples]</c>.
/// </summary>
public static unsafe class GrantLatencyProbe
{
    private const ulong Ram = 64UL << 20;
    private const ulong Range = 2UL << 20;
    private const int RangePages = (int)(Range >> Page.Shift);
    private const ulong OwnerGpa = 8UL << 20, AttachGpa = 16UL << 20, OwnGpa = 32UL << 20;
    private const ulong Key = 0x6265_6e63;

    public static int Run(string[] args)
    {
        int samples = 2000;
        if (args.Length > 0 && (!int.TryParse(args[0], out samples) || samples <= 0))
        {
            Console.Error.WriteLine($"grant-latency: samples must be a positive integer, not '{args[0]}'");
            return 2;
        }
        Console.WriteLine($"grant latency probe: {samples} samples per row (2 MiB rows: {Math.Max(1, samples / 10)}), " +
                          $"{Environment.ProcessorCount} cores, load average {LoadAverage()}");
        Console.WriteLine($"  {"what",-58} {"count",6} {"p50",9} {"p90",9} {"p99",9} {"max",10}");
        foreach (int running in new[] { 0, 1, 2 })
        {
            Console.WriteLine($"invalidation with {running} of the attacher's vCPUs running over the range:");
            foreach (int pages in new[] { 1, RangePages })
            {
                int n = pages == 1 ? samples : Math.Max(1, samples / 10);
                Print($"grant recall, {Pages(pages)} (owner's start+end)", Recall(running, pages, n, kvm: false));
                Print($"KVM-style invalidation, {Pages(pages)} (attacher's own)", Recall(running, pages, n, kvm: true));
            }
        }
        Console.WriteLine("secondary fault of one page the host has (no vCPU running):");
        var (own, hit, miss) = Faults(samples);
        Print("owner's own fault (EPT over its address space)", own);
        Print("attacher's fault, grant's PFN table has the page", hit);
        Print("attacher's fault, PFN miss: get_user_pages on the owner", miss);
        Console.WriteLine("recall by number of attachments (each maps the range; no vCPU running):");
        foreach (int attachers in new[] { 1, 2, 4, 8 })
            foreach (int pages in new[] { 1, RangePages })
                Print($"{attachers} attachment{(attachers > 1 ? "s" : "")}, {Pages(pages)}", PerAttacher(attachers, pages, pages == 1 ? samples : Math.Max(1, samples / 10)));
        return 0;
    }

    private static string Pages(int pages) => pages == 1 ? "one page" : "2 MiB";

    /// <summary>Two VMs on one host; VM 0 grants [OwnerGpa, +2 MiB), VM 1 attaches it <paramref name="attachments"/> times from AttachGpa on.</summary>
    private sealed class TwoVms : IDisposable
    {
        public readonly SharedHost Shared;
        public readonly HostBackedMemory Owner, User;
        public readonly List<Attachment> Attachments = [];

        public TwoVms(int userVcpus, int attachments = 1)
        {
            Shared = new SharedHost(new HostMemoryOptions { HostMemoryBytes = 2 * Ram + (Ram >> 2), SwapBytes = 2 * Ram + (16UL << 20) }, measure: false);
            var config = new GuestMemoryConfig(2 * Ram, Measure: false);
            Owner = new HostBackedMemory(Shared, 0, Ram, 1, config);
            User = new HostBackedMemory(Shared, 1, Ram, Math.Max(1, userVcpus), config);
            Check(Owner.Grants!.Make(new Gpa(OwnerGpa), Range, Key));
            for (int i = 0; i < attachments; i++)
            {
                Check(User.Grants!.Attach(Key, Range, new Gpa(AttachGpa + (ulong)i * Range)));
                Attachments.Add(User.Grants!.Router.Attachments[^1]);
            }
            // The owner's pages exist in the host (written once through its own MMU).
            var link = new VcpuLink(40);
            for (int p = 0; p < RangePages; p++) Translate(Owner.Grants!.Router, link, OwnerGpa + ((ulong)p << Page.Shift));
        }

        public void Dispose()
        {
            User.Dispose();
            Owner.Dispose();
            Shared.Dispose();
        }
    }

    private static void Check(long result)
    {
        if (result != 0) throw new InvalidOperationException($"grant call answered {result}");
    }

    private static void Translate(IGuestMemory memory, VcpuLink link, ulong gpa)
    {
        if (memory.Translate(link, new Gpa(gpa), AccessKind.Write, out _) != TranslateStatus.Ok)
            throw new InvalidOperationException($"translate gpa:0x{gpa:x} failed");
    }

    /// <summary>
    /// Start-to-end latency of an invalidation of <paramref name="pages"/> pages while the
    /// attacher's vCPUs read the range: through the owner's notifiers over the granted range
    /// (the recall), or (<paramref name="kvm"/>) through the attacher's own over its own pages.
    /// </summary>
    private static HistogramBase Recall(int running, int pages, int samples, bool kvm)
    {
        using var vms = new TwoVms(running);
        ulong touched = kvm ? OwnGpa : AttachGpa;
        using var guest = running == 0 ? null : new SpinGuest(vms.User.Memory, running, touched, RangePages);
        // Fill through links with the running vCPUs' indices: every entry lists them as TLB holders.
        VcpuLink[] fillers = [.. Enumerable.Range(0, Math.Max(1, running)).Select(i => new VcpuLink(i))];
        var notifiers = kvm ? vms.User.Space.Notifiers : vms.Owner.Space.Notifiers;
        Hva baseHva = kvm ? vms.User.RamHva.Add(OwnGpa) : vms.Owner.RamHva.Add(OwnerGpa);
        var h = LatencyScale.NewHistogram();
        for (int s = -Math.Min(samples, 50); s < samples; s++)
        {
            int first = pages == 1 ? (s & int.MaxValue) % RangePages : 0;
            for (int p = first; p < first + pages; p++)
                foreach (var f in fillers) Translate(vms.User.Grants!.Router, f, touched + ((ulong)p << Page.Shift));
            var hva = baseHva.Add((ulong)first << Page.Shift);
            var r = new InvalidateRange(hva, hva.Add((ulong)pages << Page.Shift), InvalidateEvent.Clear, MayBlock: true);
            long t0 = Stopwatch.GetTimestamp();
            notifiers.InvalidateRangeStart(r);
            notifiers.InvalidateRangeEnd(r);
            long t1 = Stopwatch.GetTimestamp();
            if (s >= 0) h.RecordValue(LatencyScale.TicksToNs(t1 - t0));
        }
        return h;
    }

    /// <summary>Fault latency: the owner's own, the attacher's with the PFN table filled, and with it empty.</summary>
    private static (HistogramBase Own, HistogramBase Hit, HistogramBase Miss) Faults(int samples)
    {
        using var vms = new TwoVms(0);
        var attachment = vms.Attachments[0];
        var link = new VcpuLink(0);
        var ownerLink = new VcpuLink(0);
        var (own, hit, miss) = (LatencyScale.NewHistogram(), LatencyScale.NewHistogram(), LatencyScale.NewHistogram());
        for (int s = -Math.Min(samples, 50); s < samples; s++)
        {
            int p = (s & int.MaxValue) % RangePages;
            ulong off = (ulong)p << Page.Shift;
            // Owner: zap its entry only (the host keeps the page), then fault it back.
            var ownerHva = vms.Owner.RamHva.Add(OwnerGpa + off);
            ZapOnly((EptMmu)vms.Owner.Mmu, ownerHva);
            long t0 = Stopwatch.GetTimestamp();
            Translate(vms.Owner.Grants!.Router, ownerLink, OwnerGpa + off);
            long t1 = Stopwatch.GetTimestamp();
            // Attacher, PFN hit: zap its entry through its view (the grant keeps its reference).
            Translate(vms.User.Grants!.Router, link, AttachGpa + off);
            var r = new InvalidateRange(ownerHva, ownerHva.Add(Page.Size), InvalidateEvent.Clear, MayBlock: true);
            attachment.View.Notifiers.InvalidateRangeStart(r);
            attachment.View.Notifiers.InvalidateRangeEnd(r);
            long t2 = Stopwatch.GetTimestamp();
            Translate(vms.User.Grants!.Router, link, AttachGpa + off);
            long t3 = Stopwatch.GetTimestamp();
            // Attacher, PFN miss: a recall (the owner's notifiers) empties the PFN entry too.
            vms.Owner.Space.Notifiers.InvalidateRangeStart(r);
            vms.Owner.Space.Notifiers.InvalidateRangeEnd(r);
            long t4 = Stopwatch.GetTimestamp();
            Translate(vms.User.Grants!.Router, link, AttachGpa + off);
            long t5 = Stopwatch.GetTimestamp();
            if (s < 0) continue;
            own.RecordValue(LatencyScale.TicksToNs(t1 - t0));
            hit.RecordValue(LatencyScale.TicksToNs(t3 - t2));
            miss.RecordValue(LatencyScale.TicksToNs(t5 - t4));
        }
        return (own, hit, miss);
    }

    /// <summary>Zap one page of the MMU through its own notifier callbacks, not the host's (the host page and any grant stay).</summary>
    private static void ZapOnly(EptMmu mmu, Hva hva)
    {
        var r = new InvalidateRange(hva, hva.Add(Page.Size), InvalidateEvent.Clear, MayBlock: true);
        mmu.InvalidateRangeStart(r);
        mmu.InvalidateRangeEnd(r);
    }

    /// <summary>Recall latency with <paramref name="attachers"/> attachments of the range, each with every page mapped.</summary>
    private static HistogramBase PerAttacher(int attachers, int pages, int samples)
    {
        using var vms = new TwoVms(0, attachers);
        var link = new VcpuLink(0);
        var h = LatencyScale.NewHistogram();
        for (int s = -Math.Min(samples, 20); s < samples; s++)
        {
            int first = pages == 1 ? (s & int.MaxValue) % RangePages : 0;
            foreach (var a in vms.Attachments)
                for (int p = first; p < first + pages; p++) Translate(vms.User.Grants!.Router, link, a.Gpa.Value + ((ulong)p << Page.Shift));
            var hva = vms.Owner.RamHva.Add(OwnerGpa + ((ulong)first << Page.Shift));
            var r = new InvalidateRange(hva, hva.Add((ulong)pages << Page.Shift), InvalidateEvent.Clear, MayBlock: true);
            long t0 = Stopwatch.GetTimestamp();
            vms.Owner.Space.Notifiers.InvalidateRangeStart(r);
            vms.Owner.Space.Notifiers.InvalidateRangeEnd(r);
            long t1 = Stopwatch.GetTimestamp();
            if (s >= 0) h.RecordValue(LatencyScale.TicksToNs(t1 - t0));
        }
        return h;
    }

    private static void Print(string what, HistogramBase h)
    {
        if (h.TotalCount == 0) { Console.WriteLine($"  {what,-58} {0,6}"); return; }
        Console.WriteLine($"  {what,-58} {h.TotalCount,6} {Fmt(h.GetValueAtPercentile(50)),9} {Fmt(h.GetValueAtPercentile(90)),9} " +
                          $"{Fmt(h.GetValueAtPercentile(99)),9} {Fmt(h.GetMaxValue()),10}");
    }

    private static string Fmt(long ns) => ns < 10_000 ? $"{ns} ns" : ns < 10_000_000 ? $"{ns / 1000.0:F1} us" : $"{ns / 1e6:F1} ms";

    private static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }
}
