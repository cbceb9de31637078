using ToyVmm.Loader;
using ToyVmm.Vm;

namespace ToyVmm.Fuzz;

/// <summary>
/// Runs a fuzzed guest under one <see cref="MemoryMode"/> and checks what must hold
/// whatever the guest did: the run ends in a guest-caused way (never an internal error,
/// a host failure or a hang), the MMU invariant checker saw no violation, and the host's
/// frames, page tables and swap slots are consistent afterwards.
/// </summary>
internal static class GuestRun
{
    /// <summary>Outcomes a guest may cause; anything else is the VMM's fault.</summary>
    public static readonly IReadOnlySet<VmOutcome> GuestCaused =
        new HashSet<VmOutcome> { VmOutcome.AllHalted, VmOutcome.ExitPort, VmOutcome.VmError, VmOutcome.InstructionLimit };

    /// <summary>A run that has not ended by then is a hang (a guest of at most a few thousand instructions ends in milliseconds).</summary>
    private static readonly TimeSpan HangAfter = TimeSpan.FromSeconds(30);

    public static VmResult Run(ElfImage image, MemoryMode mode, int vcpus, long instructionLimit, string context)
    {
        // Host frames for half of guest RAM: faults, reclaim and swap all take part.
        using var memory = mode.Create(GuestImage.Ram, vcpus, GuestImage.Ram / 2);
        var console = new MemoryStream();
        VmResult result;
        using (var vm = VirtualMachine.Create(new VmConfig(GuestImage.Ram, vcpus, instructionLimit), image, console, _ => memory.Memory))
        {
            if (memory.Host?.Checker is { } checker)
                checker.Violated += v => vm.Stop(VmOutcome.InvariantViolation, v.ToString() ?? "violation");
            using var hang = new CancellationTokenSource(HangAfter);
            result = vm.Run(hang.Token);
            memory.Host?.StopBackground();
        }
        if (result.Outcome == VmOutcome.Interrupted)
            throw new FuzzFinding($"{context} ({mode}): the guest did not end within {HangAfter.TotalSeconds:0} s");
        if (!GuestCaused.Contains(result.Outcome))
            throw new FuzzFinding($"{context} ({mode}): {result.Outcome}: {result.Message}");
        if (result.Outcome == VmOutcome.VmError && string.IsNullOrWhiteSpace(result.Message))
            throw new FuzzFinding($"{context} ({mode}): a VM error without a message");
        if (memory.Host is { } host)
        {
            if (host.Checker is { ViolationCount: > 0 } c)
                throw new FuzzFinding($"{context} ({mode}): {c.ViolationCount} invariant violation(s)");
            var errors = host.Host.CheckConsistency();
            if (errors.Count > 0)
                throw new FuzzFinding($"{context} ({mode}): the host is inconsistent after the run: {errors[0]}");
        }
        return result;
    }
}
