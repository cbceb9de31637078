using Xunit;
using ToyVmm.Mmu.Notifiers;

namespace ToyVmm.Mmu.Tests.Notifiers;

public class MmuNotifierRegistryTests
{
    private sealed class Recorder(string name, List<string> log, bool refuseNonBlocking = false) : IMmuNotifierSubscriber
    {
        public ManualResetEventSlim? Gate;
        public ManualResetEventSlim Entered { get; } = new();
        public bool Young;
        public bool InvalidateRangeStart(in InvalidateRange range)
        {
            Entered.Set();
            Gate?.Wait(TimeSpan.FromSeconds(10));
            if (refuseNonBlocking && !range.MayBlock) { lock (log) log.Add($"{name}:refuse"); return false; }
            lock (log) log.Add($"{name}:start"); return true;
        }
        public void InvalidateRangeEnd(in InvalidateRange range) { lock (log) log.Add($"{name}:end"); }
        public void InvalidatePage(Hva address) { lock (log) log.Add($"{name}:page"); }
        public bool ClearFlushYoung(Hva start, Hva end) { bool y = Young; Young = false; return y; }
        public bool ClearYoung(Hva start, Hva end) => ClearFlushYoung(start, end);
        public bool TestYoung(Hva address) => Young;
        public void Release() { lock (log) log.Add($"{name}:release"); }
    }

    private static InvalidateRange R(bool mayBlock = true) => new(new Hva(0x1000), new Hva(0x3000), InvalidateEvent.Clear, mayBlock);

    [Fact]
    public void InvalidateRangeStart_CallsEverySubscriberInOrder()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry();
        reg.Register(new Recorder("a", log));
        reg.Register(new Recorder("b", log));
        Assert.True(reg.InvalidateRangeStart(R()));
        reg.InvalidateRangeEnd(R());
        Assert.Equal(["a:start", "b:start", "a:end", "b:end"], log);
    }

    [Fact]
    public void InvalidateRangeStart_NonBlockingRefused_EndsTheStartedOnesAndFails()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry();
        reg.Register(new Recorder("a", log));
        reg.Register(new Recorder("b", log, refuseNonBlocking: true));
        reg.Register(new Recorder("c", log));
        Assert.False(reg.InvalidateRangeStart(R(mayBlock: false)));
        Assert.Equal(["a:start", "b:refuse", "a:end"], log);
    }

    [Fact]
    public void Young_IsTheOrOfAllSubscribers()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry();
        var a = new Recorder("a", log); var b = new Recorder("b", log) { Young = true };
        reg.Register(a); reg.Register(b);
        Assert.True(reg.TestYoung(new Hva(0x1000)));
        Assert.True(reg.ClearFlushYoung(new Hva(0), new Hva(0x1000)));
        Assert.False(reg.ClearFlushYoung(new Hva(0), new Hva(0x1000)));
    }

    [Fact]
    public void Unregister_DuringCallback_WaitsForTheCallbackToFinish()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry();
        var slow = new Recorder("slow", log) { Gate = new ManualResetEventSlim() };
        reg.Register(slow);
        bool started = false;
        var invalidator = new Thread(() => started = reg.InvalidateRangeStart(R()));
        invalidator.Start();
        Assert.True(slow.Entered.Wait(TimeSpan.FromSeconds(10)));
        var unregister = new Thread(() => reg.Unregister(slow));
        unregister.Start();
        // The callback is still running, so unregister must still be waiting.
        Assert.False(unregister.Join(TimeSpan.FromMilliseconds(100)));
        slow.Gate.Set();
        Assert.True(unregister.Join(TimeSpan.FromSeconds(10)));
        Assert.True(invalidator.Join(TimeSpan.FromSeconds(10)));
        Assert.True(started);
        lock (log) Assert.Equal(["slow:start"], log);
        reg.InvalidateRangeStart(R());   // no further callback reaches it
        lock (log) Assert.Single(log);
    }

    [Fact]
    public void Release_CallsEveryoneAndForbidsNewSubscribers()
    {
        var log = new List<string>();
        var reg = new MmuNotifierRegistry();
        reg.Register(new Recorder("a", log));
        reg.Release();
        Assert.Equal(["a:release"], log);
        Assert.Throws<InvalidOperationException>(() => reg.Register(new Recorder("b", log)));
    }

    [Fact]
    public void RegisterUnregister_WhileCallbacksRun_NeverCallsAnUnregisteredSubscriber()
    {
        var reg = new MmuNotifierRegistry();
        var stop = DateTime.UtcNow.AddSeconds(1);
        int afterUnregister = 0;
        var subs = Enumerable.Range(0, 4).Select(i => new FlagSubscriber()).ToArray();
        var caller = new Thread(() =>
        {
            for (int n = 0; n < 200_000 && DateTime.UtcNow < stop; n++) { reg.InvalidateRangeStart(R()); reg.InvalidateRangeEnd(R()); }
        });
        caller.Start();
        for (int n = 0; n < 2_000 && caller.IsAlive; n++)
        {
            var s = subs[n % subs.Length];
            reg.Register(s);
            reg.Unregister(s);
            int before = Volatile.Read(ref s.Calls);
            Thread.SpinWait(50);
            if (Volatile.Read(ref s.Calls) != before) afterUnregister++;
        }
        caller.Join();
        Assert.Equal(0, afterUnregister);
    }

    private sealed class FlagSubscriber : IMmuNotifierSubscriber
    {
        public int Calls;
        public bool InvalidateRangeStart(in InvalidateRange range) { Interlocked.Increment(ref Calls); return true; }
        public void InvalidateRangeEnd(in InvalidateRange range) => Interlocked.Increment(ref Calls);
        public void InvalidatePage(Hva address) => Interlocked.Increment(ref Calls);
        public bool ClearFlushYoung(Hva start, Hva end) => false;
        public bool ClearYoung(Hva start, Hva end) => false;
        public bool TestYoung(Hva address) => false;
        public void Release() { }
    }
}
