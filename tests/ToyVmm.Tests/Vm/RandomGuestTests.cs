using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Guests made of random bytes: whatever they do, the VMM must end the run in one of
/// the guest-caused ways (halt, exit port, VM error, instruction limit), never with
/// an exception escaping the interpreter or a hang.
/// </summary>
public class RandomGuestTests
{
    private const ulong Ram = 8UL << 20;

    private static readonly VmOutcome[] GuestCaused =
        [VmOutcome.AllHalted, VmOutcome.ExitPort, VmOutcome.VmError, VmOutcome.InstructionLimit];

    private static Dictionary<VmOutcome, int> RunSeeds(int firstSeed, int count, long limit)
    {
        var seen = new Dictionary<VmOutcome, int>();
        for (int seed = firstSeed; seed < firstSeed + count; seed++)
        {
            var rng = new Random(seed);
            var code = new byte[rng.Next(1, 4096)];
            rng.NextBytes(code);
            int vcpus = seed % 4 == 0 ? 2 : 1;
            var run = AsmGuest.Execute(AsmGuest.FromCode(code, Ram), vcpus: vcpus, ram: Ram, instructionLimit: limit);
            Assert.True(GuestCaused.Contains(run.Result.Outcome),
                $"seed {seed}: {run.Result.Outcome}: {run.Result.Message}");
            if (run.Result.Outcome == VmOutcome.VmError)
                Assert.False(string.IsNullOrWhiteSpace(run.Result.Message), $"seed {seed}: VM error without a message");
            seen[run.Result.Outcome] = seen.GetValueOrDefault(run.Result.Outcome) + 1;
        }
        return seen;
    }

    [Fact]
    public void Run_RandomBytes_AlwaysEndsInAGuestCausedWay()
    {
        var seen = RunSeeds(1, 200, 100_000);
        Assert.True(seen.GetValueOrDefault(VmOutcome.VmError) > 0, "random code should at least sometimes fault");
    }

    [Fact]
    [Trait("Category", "Long")]
    public void Run_ManyRandomBytes_AlwaysEndsInAGuestCausedWay()
    {
        RunSeeds(1000, 3000, 1_000_000);
    }
}
