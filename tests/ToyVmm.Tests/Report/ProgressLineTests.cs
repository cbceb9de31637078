using ToyVmm.Report;
using Xunit;

namespace ToyVmm.Tests.Report;

public class ProgressLineTests
{
    /// <summary>A clock that moves only when told, with timers that fire when it passes their due time.</summary>
    private sealed class FakeTime : TimeProvider
    {
        private long _now;
        private readonly List<FakeTimer> _timers = new();
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => _now;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var t = new FakeTimer(this, callback, state, _now + dueTime.Ticks, period.Ticks);
            _timers.Add(t);
            return t;
        }

        public int LiveTimers => _timers.Count(t => !t.Disposed);

        public void Advance(TimeSpan by)
        {
            long end = _now + by.Ticks;
            while (true)
            {
                var next = _timers.Where(t => !t.Disposed && t.Due <= end).OrderBy(t => t.Due).FirstOrDefault();
                if (next is null) break;
                _now = next.Due;
                next.Due += next.Period;
                next.Callback(next.State);
            }
            _now = end;
        }

        public sealed class FakeTimer(FakeTime owner, TimerCallback callback, object? state, long due, long period) : ITimer
        {
            public TimerCallback Callback { get; } = callback;
            public object? State { get; } = state;
            public long Due { get; set; } = due;
            public long Period { get; } = period;
            public bool Disposed { get; private set; }
            public bool Change(TimeSpan dueTime, TimeSpan p) { Due = owner._now + dueTime.Ticks; return true; }
            public void Dispose() => Disposed = true;
            public ValueTask DisposeAsync() { Dispose(); return ValueTask.CompletedTask; }
        }
    }

    [Fact]
    public void Format_OneSecondApart_RatesInShortForm()
    {
        string line = ProgressLine.Format(TimeSpan.FromSeconds(3), new LiveCounters(1_412_000_000, 24_300, 2_100, 1_640, 1_200),
            new LiveCounters(1_000_000_000, 12_000, 1_000, 1_000, 5_000), 1.0);
        Assert.Equal(" 3.0s  412 MIPS  faults 12.3k/s  inval 1.1k/s  pageouts 640/s  free 1.2k frames", line);
    }

    [Fact]
    public void Format_NoTimePassed_ZeroRatesNotInfinity()
    {
        var c = new LiveCounters(10, 10, 10, 10, 10);
        Assert.Equal(" 0.0s  0.0 MIPS  faults 0/s  inval 0/s  pageouts 0/s  free 10 frames", ProgressLine.Format(TimeSpan.Zero, c, c, 0));
    }

    [Fact]
    public void Timer_EverySecond_RewritesTheLineInPlace()
    {
        var time = new FakeTime();
        var writer = new StringWriter();
        long instructions = 0, faults = 0;
        using var line = new ProgressLine(() => new LiveCounters(instructions, faults, 0, 0, 100), writer, time);
        line.Start();
        instructions = 50_000_000; faults = 2_000;
        time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal("", writer.ToString());
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal("\r 1.0s  50 MIPS  faults 2.0k/s  inval 0/s  pageouts 0/s  free 100 frames", writer.ToString());
        instructions += 5_000_000;
        time.Advance(TimeSpan.FromSeconds(1));
        string[] writes = writer.ToString().Split('\r', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, writes.Length);
        // The second line is shorter (5.0 MIPS, no faults): padded to cover the first.
        Assert.StartsWith(" 2.0s  5.0 MIPS  faults 0/s", writes[1]);
        Assert.Equal(writes[0].Length, writes[1].Length);
    }

    [Fact]
    public void Dispose_AfterTicks_ClearsTheLineAndStopsTheTimer()
    {
        var time = new FakeTime();
        var writer = new StringWriter();
        var line = new ProgressLine(() => new LiveCounters(0, 0, 0, 0, 7), writer, time);
        line.Start();
        time.Advance(TimeSpan.FromSeconds(1));
        int shown = writer.ToString().Length - 1;
        line.Dispose();
        Assert.EndsWith("\r" + new string(' ', shown) + "\r", writer.ToString());
        Assert.Equal(0, time.LiveTimers);
        int length = writer.ToString().Length;
        time.Advance(TimeSpan.FromSeconds(5));
        line.Tick();
        line.Dispose();
        Assert.Equal(length, writer.ToString().Length);
    }

    [Fact]
    public void Dispose_BeforeAnyTick_WritesNothing()
    {
        var writer = new StringWriter();
        var line = new ProgressLine(() => default, writer, new FakeTime());
        line.Start();
        line.Dispose();
        Assert.Equal("", writer.ToString());
    }

    [Fact]
    public void StartIfTerminal_Quiet_Null() =>
        Assert.Null(ProgressLine.StartIfTerminal(() => default, quiet: true));

    [Fact]
    public void StartIfTerminal_ErrorRedirected_Null()
    {
        // The test runner redirects standard error, as a log file or pipe would.
        Assert.True(Console.IsErrorRedirected);
        Assert.Null(ProgressLine.StartIfTerminal(() => default, quiet: false));
    }
}
