using System.Diagnostics;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Secondary;

// The secondary fault of every secondary MMU, the left column of the protocol
// diagram in SecondaryMmuCore.cs: leave guest mode, get_user_pages with no
// lock held, take _mmuLock, let the protocol re-check, install. What is
// installed is the caller's (IFaultInstall): the guest-frame table's entry
// (DirectInstall), or a shadow MMU's guest-virtual fill, which may refuse.

/// <summary>How a secondary fault ended.</summary>
internal enum FaultOutcome
{
    Ok = 0,
    /// <summary>The install refused (a guest-virtual fill whose walk went stale): the page went back; walk again.</summary>
    Refused,
    /// <summary>No memory slot covers the guest-physical page.</summary>
    Unbacked,
    /// <summary>The host could not provide a frame.</summary>
    HostError,
    /// <summary>A write to a read-only slot, or the host refused the access.</summary>
    Protection,
}

/// <summary>What a secondary fault installs once the protocol let it (a struct: a fault allocates nothing).</summary>
internal interface IFaultInstall
{
    /// <summary>Install under the MMU lock; false when the install must not happen (the fault gives the page back and reports <see cref="FaultOutcome.Refused"/>).</summary>
    /// <param name="newMapping">Set when the entry did not map this frame before (the protocol may pin it).</param>
    bool InstallLocked(VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping);
}

public abstract unsafe partial class SecondaryMmuCore
{
    /// <summary>The guest-frame table's entry (<see cref="InstallDirectLocked"/>).</summary>
    private readonly struct DirectInstall(SecondaryMmuCore mmu) : IFaultInstall
    {
        public bool InstallLocked(VcpuLink vcpu, Gpa gpa, Hfn frame, bool write, out bool newMapping) =>
            mmu.InstallDirectLocked(vcpu, gpa, frame, write, out newMapping);
    }

    /// <summary>
    /// The secondary fault: leave guest mode, get_user_pages with no lock held,
    /// take the lock, let the protocol re-check, install. The install may refuse:
    /// the page is given back and the fault reports <see cref="FaultOutcome.Refused"/>.
    /// On <see cref="FaultOutcome.Ok"/>, <paramref name="frame"/> is the installed host frame.
    /// </summary>
    private protected FaultOutcome Fault<T>(VcpuLink vcpu, Gpa gpa, AccessKind kind, ref T install, out Hfn frame) where T : struct, IFaultInstall
    {
        frame = default;
        var slot = _slots.Find(gpa);
        if (slot is null) return FaultOutcome.Unbacked;
        bool write = kind == AccessKind.Write;
        if (write && slot.ReadOnly) return FaultOutcome.Protection;
        ulong gfn = gpa.PageNumber;
        Hva hva = slot.ToHva(gpa.PageBase);
        long started = Stopwatch.GetTimestamp();
        bool wasInGuest = vcpu.Mode == VcpuMode.InGuest;
        if (wasInGuest) vcpu.ExitGuest();          // GetUserPage and the MMU lock may block
        var wait = new SpinWait();
        var answered = FaultKind.Present;   // the slowest answer of every try: the latency includes it
        try
        {
            while (true)
            {
                long seq = _seq.Sequence;
                if (_protocol.FaultShouldWait(_seq, gfn))
                {
                    wait.SpinOnce();                // an invalidation covers us: let it finish first
                    continue;
                }
                var r = _host.GetUserPage(hva, write, out var got, out var how);
                if (how > answered) answered = how;
                if (r != HostFaultResult.Ok)
                    return r == HostFaultResult.Protection ? FaultOutcome.Protection : FaultOutcome.HostError;
                AfterGetUserPageHook?.Invoke(gpa, got);
                lock (_mmuLock)
                {
                    if (_protocol.FaultMustRetryLocked(_seq, gfn, seq))
                    {
                        _host.PutUserPage(got, PageRelease.Unused);
                        Events?.FaultRetried(vcpu.Index);
                        continue;
                    }
                    if (!install.InstallLocked(vcpu, gpa, got, write, out bool newMapping))
                    {
                        _host.PutUserPage(got, PageRelease.Unused);
                        return FaultOutcome.Refused;
                    }
                    // The fault's reference: given back, or kept by the entry as a pin (the protocol's
                    // choice). Under the lock: a zap right after the unlock must find the pin decided.
                    Interlocked.Add(ref _pinned, _protocol.FaultInstalled(_host, got, write ? PageRelease.Dirty : PageRelease.Clean, newMapping));
                }
                frame = got;
                Events?.FaultCompleted(vcpu.Index, gfn, answered, started, Stopwatch.GetTimestamp());
                return FaultOutcome.Ok;
            }
        }
        finally
        {
            // The caller checks VcpuLink.HasRequests afterwards: a flush asked while we
            // were outside guest mode was not waited for.
            if (wasInGuest) vcpu.EnterGuest();
        }
    }
}
