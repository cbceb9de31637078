using ToyVmm.Soak;

namespace ToyVmm.Bench.Soak;

/// <summary><c>soak [seconds [guest...]]</c> (make soak): runs <see cref="SoakLoop"/> and prints its figures; exit 1 on any failure or violation, 2 on bad input.</summary>
public static class SoakCommand
{
    public static int Run(string[] args)
    {
        int seconds = 300;
        if (args.Length > 0 && (!int.TryParse(args[0], out seconds) || seconds <= 0))
        {
            Console.Error.WriteLine($"soak: seconds must be a positive whole number, not '{args[0]}'");
            return 2;
        }
        var only = args.Skip(1).ToHashSet();
        var loop = new SoakLoop(new SoakOptions
        {
            Guests = g => only.Count == 0 || only.Contains(g.Name),
            Root = SoakLoop.FindRoot(AppContext.BaseDirectory),
            Duration = TimeSpan.FromSeconds(seconds),
        }, Console.Out);
        Console.WriteLine($"# ToyVmm soak: {seconds} s, every guest in guest/guests.txt under {string.Join(", ", SoakConfig.All())}");
        Console.WriteLine("# host pool = RAM/4, background reclaim, page-outs every 2 ms (random) and 5 ms (16 cold), checker on");
        try
        {
            loop.Run();
        }
        catch (Exception ex) when (ex is IOException or FormatException or InvalidOperationException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"soak: {ex.Message}");
            return 2;
        }
        loop.Print(Console.Out);
        bool ok = loop.Total.Runs > 0 && loop.Total.Failures == 0 && loop.Total.Violations == 0;
        Console.WriteLine(ok ? "soak: PASS" : "soak: FAIL");
        return ok ? 0 : 1;
    }
}
