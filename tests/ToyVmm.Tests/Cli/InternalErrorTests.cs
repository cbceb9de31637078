using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using ToyVmm.Cli;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;
using ToyVmm.Tests.Vm;
using ToyVmm.Vm;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Cli;

/// <summary>
/// A vCPU whose interpreter or device throws an exception no one expects (a bug of the
/// VMM): the run ends as an internal error, status 1, with one line naming the vCPU, the
/// RIP and the exception; the other vCPUs stop; nothing hangs; the swap file is removed.
/// Each run is bounded: a hang fails the test instead of hanging the suite.
/// </summary>
public class InternalErrorTests : IDisposable
{
    private const ulong Ram = 16UL << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("toyvmm-internal-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The management side with PAGEOUT broken: it throws as a buggy device would.</summary>
    private sealed class ThrowingPageOut(IGuestMemoryManagement inner) : IGuestMemoryManagement
    {
        public ulong RamBytes => inner.RamBytes;
        public event Action<Gpa, ulong>? ContentsReplaced
        {
            add => inner.ContentsReplaced += value;
            remove => inner.ContentsReplaced -= value;
        }
        public long PageOut(Gpa start, ulong bytes) => throw new InvalidOperationException("injected device failure");
        public long PageOutPages(ReadOnlySpan<Gpa> pages) => throw new InvalidOperationException("injected device failure");
        public long Discard(Gpa start, ulong bytes) => inner.Discard(start, bytes);
    }

    /// <summary>The access side with one guest page that makes the translation throw, as a bug in the MMU would.</summary>
    private sealed class ThrowingPage(IGuestMemory inner, ulong page) : IGuestMemory
    {
        public ulong RamBytes => inner.RamBytes;
        public void AttachVcpu(VcpuLink vcpu) => inner.AttachVcpu(vcpu);
        public void DetachVcpu(VcpuLink vcpu) => inner.DetachVcpu(vcpu);
        public unsafe TranslateStatus Translate(VcpuLink vcpu, Gpa gpa, AccessKind kind, out byte* hostPage)
        {
            if (gpa.Value >> Page.Shift == page >> Page.Shift) throw new IndexOutOfRangeException("injected translation failure");
            return inner.Translate(vcpu, gpa, kind, out hostPage);
        }
    }

    private sealed class Lifetime : IHostApplicationLifetime
    {
        public CancellationToken ApplicationStarted => CancellationToken.None;
        public CancellationToken ApplicationStopping => CancellationToken.None;
        public CancellationToken ApplicationStopped => CancellationToken.None;
        public void StopApplication() { }
    }

    private sealed class Messages : ILogger<VmRunner>
    {
        public readonly List<(LogLevel Level, string Text)> Lines = new();
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) lock (Lines) Lines.Add((logLevel, formatter(state, exception)));
        }
    }

    /// <summary>A guest page the loader does not write: only the guest touches it.</summary>
    private const ulong GuestOnlyPage = 0x400000;

    /// <summary>
    /// vCPU 0 stores to <see cref="GuestOnlyPage"/>, then PAGEOUTs it; every other vCPU
    /// spins for ever (no instruction limit), so only the failure can end the run.
    /// </summary>
    private string Guest()
    {
        var image = AsmGuest.Build(a =>
        {
            var spin = a.CreateLabel();
            a.test(rdi, rdi);
            a.jnz(spin);
            a.mov(rbx, GuestOnlyPage);
            a.mov(__qword_ptr[rbx], 0x5A);
            a.mov(eax, 0x100u);
            a.mov(ecx, 0x1000u);
            a.vmcall();
            a.Exit(0);
            a.Label(ref spin);
            a.jmp(spin);
        }, Ram);
        string path = Path.Combine(_dir, "guest.elf");
        File.WriteAllBytes(path, image.File);
        return path;
    }

    private string SwapPath => Path.Combine(_dir, "run.swap");

    private VmRunner Runner(Func<VmMemory, VmMemory> wrap, Messages log)
    {
        var options = new RunOptions { GuestPath = Guest(), MemoryBytes = Ram, Vcpus = 3, HostMemoryBytes = Ram / 2, SwapFile = SwapPath, Quiet = true };
        return new VmRunner(Options.Create(options), log, new Lifetime(), new ExitStatus(), new GuestConsoleOutput(new MemoryStream()))
        {
            WrapMemory = wrap,
        };
    }

    private async Task<(int Status, Messages Log, string SwapFile)> Run(Func<VmMemory, VmMemory> wrap)
    {
        var log = new Messages();
        var runner = Runner(wrap, log);
        int status = await Task.Run(() => runner.RunVm(CancellationToken.None)).WaitAsync(TimeSpan.FromMinutes(2));
        return (status, log, SwapPath);
    }

    [Fact]
    public async Task RunVm_DeviceThrows_InternalErrorStatusOneOthersStoppedSwapFileRemoved()
    {
        var (status, log, swap) = await Run(m => m with { Management = new ThrowingPageOut(m.Management) });
        Assert.Equal(ExitCodes.InternalError, status);
        var line = Assert.Single(log.Lines, l => l.Level >= LogLevel.Error);
        Assert.Equal(LogLevel.Critical, line.Level);
        Assert.Matches(@"^internal error: vCPU 0: internal interpreter error at RIP 0x[0-9a-f]+: InvalidOperationException: injected device failure$", line.Text);
        Assert.False(File.Exists(swap), "the swap file is removed at the end of the run");
    }

    [Fact]
    public async Task RunVm_TranslationThrows_InternalErrorStatusOneOthersStoppedSwapFileRemoved()
    {
        var (status, log, swap) = await Run(m => m with { Access = new ThrowingPage(m.Access, GuestOnlyPage) });
        Assert.Equal(ExitCodes.InternalError, status);
        var line = Assert.Single(log.Lines, l => l.Level >= LogLevel.Error);
        Assert.Matches(@"^internal error: vCPU 0: internal interpreter error at RIP 0x[0-9a-f]+: IndexOutOfRangeException: injected translation failure$", line.Text);
        Assert.False(File.Exists(swap), "the swap file is removed at the end of the run");
    }

    [Fact]
    public async Task RunVm_LoaderWriteThrows_ErrorReachesTheCallerSwapFileRemoved()
    {
        // The loader zeroes the guest's data segment through the same access side.
        var runner = Runner(m => m with { Access = new ThrowingPage(m.Access, AsmGuest.Data) }, new Messages());
        var thrown = await Assert.ThrowsAsync<IndexOutOfRangeException>(
            () => Task.Run(() => runner.RunVm(CancellationToken.None)).WaitAsync(TimeSpan.FromMinutes(2)));
        Assert.Equal("injected translation failure", thrown.Message);
        Assert.False(File.Exists(SwapPath), "the swap file is removed when building the VM fails");
    }

    [Fact]
    public async Task ExecuteAsync_RunVmThrows_LogsInternalErrorAndSetsStatusOne()
    {
        var log = new Messages();
        var status = new ExitStatus { Value = 0 };
        var options = new RunOptions { GuestPath = Guest(), MemoryBytes = Ram, HostMemoryBytes = Ram / 2, SwapFile = SwapPath, Quiet = true };
        using var runner = new VmRunner(Options.Create(options), log, new Lifetime(), status, new GuestConsoleOutput(new MemoryStream()))
        {
            WrapMemory = m => m with { Access = new ThrowingPage(m.Access, AsmGuest.Data) },
        };
        await runner.StartAsync(CancellationToken.None);
        await runner.ExecuteTask!.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal(ExitCodes.InternalError, status.Value);
        var line = Assert.Single(log.Lines, l => l.Level >= LogLevel.Error);
        Assert.Equal("internal error: IndexOutOfRangeException: injected translation failure", line.Text);
        Assert.False(File.Exists(SwapPath));
    }
}
