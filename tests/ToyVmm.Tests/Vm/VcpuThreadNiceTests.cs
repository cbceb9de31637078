using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Vm;

/// <summary>The vCPU threads' lower scheduling weight (<see cref="VmConfig.VcpuNice"/>).</summary>
public sealed class VcpuThreadNiceTests
{
    /// <summary>Runs <paramref name="body"/> on a thread of its own (a nice value, once lowered, stays with the thread).</summary>
    private static T OnOwnThread<T>(Func<T> body)
    {
        T result = default!;
        var t = new Thread(() => result = body());
        t.Start();
        t.Join();
        return result;
    }

    [Fact]
    public void TryApplyToCurrentThread_LowersOnlyTheCallingThread_AndNeverRaisesIt()
    {
        if (!OperatingSystem.IsLinux()) return;
        int mine = VcpuThreadNice.CurrentThreadNice();
        if (mine >= 7) return;   // the test run itself is niced this far: nothing to lower
        var (applied, after, again, stays) = OnOwnThread(() =>
        {
            bool ok = VcpuThreadNice.TryApplyToCurrentThread(7);
            int now = VcpuThreadNice.CurrentThreadNice();
            bool ok2 = VcpuThreadNice.TryApplyToCurrentThread(3);   // a higher weight: left as it is
            return (ok, now, ok2, VcpuThreadNice.CurrentThreadNice());
        });
        Assert.True(applied);
        Assert.Equal(7, after);
        Assert.True(again);
        Assert.Equal(7, stays);
        Assert.Equal(mine, VcpuThreadNice.CurrentThreadNice());   // the thread that started it keeps its weight
    }

    [Theory]
    [InlineData(0)]
    [InlineData(20)]
    [InlineData(-3)]
    public void TryApplyToCurrentThread_OutOfRange_ChangesNothing(int nice)
    {
        if (!OperatingSystem.IsLinux()) return;
        var (applied, before, after) = OnOwnThread(() =>
        {
            int b = VcpuThreadNice.CurrentThreadNice();
            bool ok = VcpuThreadNice.TryApplyToCurrentThread(nice);
            return (ok, b, VcpuThreadNice.CurrentThreadNice());
        });
        Assert.False(applied);
        Assert.Equal(before, after);
    }
}
