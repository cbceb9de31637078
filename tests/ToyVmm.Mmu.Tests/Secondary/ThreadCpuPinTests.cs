using ToyVmm.Mmu.Secondary;
using Xunit;

namespace ToyVmm.Mmu.Tests.Secondary;

public sealed class ThreadCpuPinTests
{
    private static T OnOwnThread<T>(Func<T> body)
    {
        T result = default!;
        Exception? failed = null;
        var t = new Thread(() =>
        {
            try { result = body(); }
            catch (Exception e) { failed = e; }
        });
        t.Start();
        t.Join();
        if (failed is not null) throw new InvalidOperationException("the thread failed", failed);
        return result;
    }

    [Fact]
    public void TryPin_AllowedCpu_IsCurrent_OnThatThreadOnly()
    {
        int cpu = PinnedThread.FirstCpu;
        if (cpu < 0) return;   // not Linux
        var (refused, current) = OnOwnThread(() => (ThreadCpuPin.TryPin(cpu), ThreadCpuPin.Current));
        Assert.Null(refused);
        Assert.Equal(cpu, current);
        Assert.Equal(-1, OnOwnThread(() => ThreadCpuPin.Current));   // another thread never pinned itself
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1 << 20)]
    public void TryPin_ImpossibleCpu_IsRefusedWithAReason_AndRemembersNothing(int cpu)
    {
        if (!OperatingSystem.IsLinux()) return;
        var (refused, current) = OnOwnThread(() => (ThreadCpuPin.TryPin(cpu), ThreadCpuPin.Current));
        Assert.Contains("out of range", refused);
        Assert.Equal(-1, current);
    }

    [Fact]
    public void TryPin_CpuOutsideTheAllowedSet_IsRefused_AndAnEarlierPinStaysCurrent()
    {
        int[] allowed = PinnedThread.AllowedCpus();
        if (allowed.Length == 0) return;
        int outside = Enumerable.Range(0, 1024).First(c => !allowed.Contains(c));
        var (refused, current) = OnOwnThread(() =>
        {
            Assert.Null(ThreadCpuPin.TryPin(allowed[0]));
            return (ThreadCpuPin.TryPin(outside), ThreadCpuPin.Current);
        });
        Assert.Contains("refused", refused);
        Assert.Equal(allowed[0], current);
    }

    [Fact]
    public void Current_ThreadMovedFromOutside_ForgetsThePin_AndSaysWhereItWasFound()
    {
        int[] allowed = PinnedThread.AllowedCpus();
        if (allowed.Length < 2) return;   // one CPU: nowhere to move it
        var (first, afterwards, movedTo) = OnOwnThread(() =>
        {
            Assert.Null(ThreadCpuPin.TryPin(allowed[0]));
            PinnedThread.PinCurrent(allowed[1]);
            return (ThreadCpuPin.Current, ThreadCpuPin.Current, ThreadCpuPin.MovedTo);
        });
        Assert.Equal(-1, first);
        Assert.Equal(-1, afterwards);
        Assert.Equal(allowed[1], movedTo);
    }
}
