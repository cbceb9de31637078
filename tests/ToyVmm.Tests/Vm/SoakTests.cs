using ToyVmm.Soak;
using Xunit;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// A short <c>make soak</c>: the same loop (bench/Soak/SoakLoop.cs) over the quick guests,
/// every configuration that must be safe, one round, bounded by a run count (never by a time).
/// </summary>
public class SoakTests
{
    [Fact]
    public void Soak_QuickGuestsOneRound_EveryRunPassesWithoutViolation()
    {
        string root = SoakLoop.FindRoot(AppContext.BaseDirectory);
        var guests = SoakGuest.LoadManifest(root).Where(Pick).ToList();
        int runs = guests.Count * SoakConfig.All().Count();
        var loop = new SoakLoop(new SoakOptions
        {
            Root = root,
            Guests = Pick,
            Duration = TimeSpan.MaxValue,
            MaxRuns = runs,
            HangTimeout = TimeSpan.FromMinutes(2),
        });

        loop.Run();

        Assert.True(loop.Total.Failures == 0, string.Join("\n", loop.FailureMessages));
        Assert.Equal(runs, loop.Total.Runs);
        Assert.Equal(0, loop.Total.Violations);
        Assert.True(loop.Total.PageOuts > 0, "the soak forced no page-out: it tested nothing");
        Assert.True(loop.Total.PagesVerified > 0, "no page came back in: it tested nothing");
    }

    // The quick guests without an SSE twin: every code path the others take, in a few seconds.
    private static bool Pick(SoakGuest g) => g.Tags.Contains("quick") && !g.Tags.Contains("sse");
}
