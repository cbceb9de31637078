using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;

namespace ToyVmm.Cli;

/// <summary>
/// SIGINT, SIGTERM and SIGHUP in every phase of a run. A signal stops the application
/// (the VM's stopping token), and the run ends as usual with status 130 when the VM
/// stops in time. Outside the guest's run the VMM may not be listening: while the
/// guest is loaded and its memory set up, or while a vCPU is blocked writing to a
/// standard output nobody reads. If the VM has not stopped within
/// <see cref="Grace"/>, the process says "interrupted" and exits 130 at once
/// (ProcessExit handlers still run: a named swap file is deleted).
/// </summary>
public sealed class InterruptWatchdog : IDisposable
{
    /// <summary>How long a signalled VM has to stop before the process exits without it.</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromMilliseconds(500);

    private readonly IHostApplicationLifetime _lifetime;
    private readonly TextWriter _messages;
    private readonly List<PosixSignalRegistration> _registrations = [];
    private Timer? _timer;
    private int _signalled;   // 0, then 1 after the first signal
    private int _disarmed;    // 1 once the VM has stopped: the rest of the run (outputs) is bounded

    public InterruptWatchdog(IHostApplicationLifetime lifetime, TextWriter messages)
    {
        _lifetime = lifetime;
        _messages = messages;
        if (OperatingSystem.IsWindows() || OperatingSystem.IsBrowser()) return;
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP })
            _registrations.Add(PosixSignalRegistration.Create(signal, OnSignal));
    }

    /// <summary>The VM has stopped: what is left (writing the outputs) finishes on its own.</summary>
    public void Disarm() => Volatile.Write(ref _disarmed, 1);

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;   // no default termination: stop the VM and save what can be saved
        if (Interlocked.Exchange(ref _signalled, 1) != 0) return;
        _lifetime.StopApplication();
        _timer = new Timer(_ => GiveUp(), null, Grace, Timeout.InfiniteTimeSpan);
    }

    private void GiveUp()
    {
        if (Volatile.Read(ref _disarmed) != 0) return;
        try { _messages.WriteLine("toyvmm: interrupted"); _messages.Flush(); }
        catch (IOException) { /* standard error is gone too: the status still says it */ }
        Environment.Exit(ExitCodes.Interrupted);
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _registrations.Clear();
        _timer?.Dispose();
    }
}
