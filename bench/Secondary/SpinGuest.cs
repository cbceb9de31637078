using Iced.Intel;
using ToyVmm.Loader;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Vm;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Bench.Secondary;

/// <summary>
/// A VM whose vCPUs run guest code forever until stopped: the "vCPUs running"
/// of the invalidation benchmarks, on the given secondary MMU. Each vCPU either
/// increments a counter on its own page, reads a run of pages over and over, or
/// (<see cref="Following"/>) keeps reading the one page the host names in a mailbox.
/// </summary>
internal sealed unsafe class SpinGuest : IDisposable
{
    private const ulong Load = 0x100000;
    /// <summary>The mailbox word: the guest-physical address every following vCPU reads.</summary>
    private const ulong Mailbox = Load + 0x8000;
    /// <summary>vCPU i's own page (counter, or the address it last read): Cells + i * 4 KiB.</summary>
    private const ulong Cells = Load + 0x10000;
    /// <summary>Guest-physical pages the host side reads and writes through (never one a vCPU uses itself).</summary>
    private const int HostLinkIndex = 62;

    private readonly VirtualMachine _vm;
    private readonly Thread _runner;
    private readonly int _vcpus;
    private readonly ulong* _mailbox;
    private readonly ulong*[] _lastRead;

    /// <param name="touchBase">When <paramref name="touchPages"/> is positive, every vCPU also reads
    /// one word of each of that many pages from this guest-physical address on, over and over
    /// (with some register arithmetic between the reads), so that they stay in its TLB.</param>
    public SpinGuest(VmMemory memory, int vcpus, ulong touchBase = 0, int touchPages = 0)
        : this(memory, vcpus, a => EmitLoop(a, touchBase, touchPages), follow: false, vcpuNice: 0, pin: false) { }

    /// <param name="vcpuNice">The vCPU threads' nice value (<see cref="VmConfig.VcpuNice"/>; 0: as they are).</param>
    /// <param name="pin">Pin the vCPU threads to CPUs (<see cref="VmConfig.PinVcpus"/>).</param>
    private SpinGuest(VmMemory memory, int vcpus, Action<Assembler> emitLoop, bool follow, int vcpuNice, bool pin)
    {
        _vcpus = vcpus;
        _lastRead = new ulong*[vcpus];
        var a = new Assembler(64);
        a.mov(rax, rdi);                  // vCPU index
        a.shl(rax, 12);
        a.add(rax, (int)Cells);
        emitLoop(a);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), Load);
        byte[] code = ms.ToArray();
        var image = new ElfImage(code, Load, [new ElfSegment(0, new Gpa(Load), 0, (ulong)code.Length, 0x20000, true)]);
        _vm = VirtualMachine.Create(new VmConfig(memory.Access.RamBytes, vcpus, VcpuNice: vcpuNice, PinVcpus: pin), image, Stream.Null, _ => memory);
        if (follow)
        {
            // Host pointers to the mailbox and to the vCPUs' cells (the image is loaded by
            // now), through a link of its own: those pages are never invalidated, so the
            // pointers stay valid while the guest runs.
            var host = new VcpuLink(HostLinkIndex);
            _mailbox = (ulong*)HostPointer(memory, host, Mailbox);
            *_mailbox = Mailbox;   // until told otherwise, read the mailbox itself
            for (int i = 0; i < vcpus; i++) _lastRead[i] = (ulong*)HostPointer(memory, host, Cells + ((ulong)i << 12));
        }
        _runner = new Thread(() => Result = _vm.Run()) { IsBackground = true, Name = "spin-guest" };
        _runner.Start();
        // Wait until every vCPU is in guest mode.
        var spin = new SpinWait();
        while (_vm.Links.Count(l => l is { Mode: VcpuMode.InGuest }) < vcpus) spin.SpinOnce();
    }

    /// <summary>
    /// vCPUs that keep reading one word of the page whose guest-physical address is
    /// in the mailbox (<see cref="Target"/>), with register arithmetic between the
    /// reads, and after each read store the address they read in their own cell
    /// (<see cref="AllHold"/>): the page about to be invalidated stays in their TLBs.
    /// </summary>
    public static SpinGuest Following(VmMemory memory, int vcpus, int vcpuNice = 0, bool pin = false) => new(memory, vcpus, a =>
    {
        var loop = a.CreateLabel();
        a.mov(rbx, Mailbox);
        a.Label(ref loop);
        a.mov(rsi, __qword_ptr[rbx]);
        a.mov(rdx, __qword_ptr[rsi]);
        for (int k = 0; k < 4; k++)      // register work between the accesses, as in compiled code
        {
            a.imul(rdx, rdx, 3);
            a.add(rdx, k);
        }
        a.mov(__qword_ptr[rax], rsi);
        a.jmp(loop);
    }, follow: true, vcpuNice, pin);

    /// <summary>Following guest: the guest-physical address the vCPUs read from now on.</summary>
    public ulong Target
    {
        get => Volatile.Read(ref *_mailbox);
        set => Volatile.Write(ref *_mailbox, value);
    }

    /// <summary>Following guest: has every vCPU read <paramref name="gpa"/> (the current target) since it was set?</summary>
    public bool AllHold(ulong gpa)
    {
        for (int i = 0; i < _vcpus; i++)
            if (Volatile.Read(ref *_lastRead[i]) != gpa) return false;
        return true;
    }

    public VcpuLink[] Links => [.. _vm.Links.Select(l => l!)];

    /// <summary>How the run ended (instructions retired included), once <see cref="Dispose"/> has stopped it.</summary>
    public VmResult? Result { get; private set; }

    private bool _disposed;

    /// <summary>Stops the vCPUs (their count of instructions is in <see cref="Result"/> afterwards); a second call does nothing.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _vm.Stop(VmOutcome.Interrupted, "benchmark done");
        _runner.Join();
        _vm.Dispose();
    }

    private static void EmitLoop(Assembler a, ulong touchBase, int touchPages)
    {
        var loop = a.CreateLabel();
        var inner = a.CreateLabel();
        a.Label(ref loop);
        if (touchPages > 0)
        {
            a.mov(rsi, touchBase);
            a.mov(ecx, touchPages);
            a.Label(ref inner);
            a.mov(rdx, __qword_ptr[rsi]);
            a.add(rsi, 4096);
            for (int k = 0; k < 4; k++)      // register work between the accesses, as in compiled code
            {
                a.imul(rdx, rdx, 3);
                a.add(rdx, k);
            }
            a.inc(__qword_ptr[rax]);
            a.dec(ecx);
            a.jnz(inner);
        }
        else a.inc(__qword_ptr[rax]);
        a.jmp(loop);
    }

    private static byte* HostPointer(VmMemory memory, VcpuLink link, ulong gpa)
    {
        var status = memory.Access.Translate(link, new Gpa(gpa), AccessKind.Write, out byte* page);
        if (status != TranslateStatus.Ok) throw new InvalidOperationException($"spin guest: guest page {gpa:X} is not mapped ({status})");
        return page + (gpa & (Page.Size - 1));
    }
}
