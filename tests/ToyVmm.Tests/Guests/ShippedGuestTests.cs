using System.Diagnostics;
using System.Text;
using ToyVmm.Loader;
using ToyVmm.Tests.Vm;
using ToyVmm.Vm;
using Xunit;

namespace ToyVmm.Tests.Guests;

/// <summary>
/// Every guest in guest/guests.txt runs in the interpreter, and its console output and
/// exit status match those of its native Linux build. Quick guests run in every test run;
/// the others carry Category=Long.
/// </summary>
public class ShippedGuestTests
{
    // A broken manifest must fail a test, not silently make the theories empty; a category
    // with no guest yields one "(none)" row (xunit refuses a theory without data).
    private const string ManifestBroken = "<guest/guests.txt unreadable>";
    private const string NoGuest = "(none)";

    private static TheoryData<string> Select(Func<GuestEntry, bool> pick)
    {
        var data = new TheoryData<string>();
        try
        {
            foreach (var e in GuestManifest.Load().Where(pick)) data.Add(e.Name);
            if (data.Count == 0) data.Add(NoGuest);
        }
        catch (Exception)
        {
            data.Add(ManifestBroken);
        }
        return data;
    }

    private static bool IsKernel(GuestEntry e) => e.Name == KernelGuestTests.Name;

    public static TheoryData<string> QuickNativeGuests => Select(e => e.HasNative && e.Tags.Contains("quick"));
    public static TheoryData<string> OtherNativeGuests => Select(e => e.HasNative && !e.Tags.Contains("quick"));
    public static TheoryData<string> VmOnlyGuests => Select(e => !e.HasNative && !IsKernel(e));

    [Theory]
    [MemberData(nameof(QuickNativeGuests))]
    public void Guest_InInterpreter_MatchesNativeBuild(string name) => CompareWithNative(name);

    [Theory]
    [Trait("Category", "Long")]
    [MemberData(nameof(OtherNativeGuests))]
    public void Guest_Long_InInterpreter_MatchesNativeBuild(string name) => CompareWithNative(name);

    [Theory]
    [MemberData(nameof(VmOnlyGuests))]
    public void Guest_VmOnly_EndsWithStatusZero(string name)
    {
        Assert.NotEqual(ManifestBroken, name);
        if (name == NoGuest) return;
        var run = RunInVm(GuestManifest.Get(name));
        Assert.True(run.Result.IsNormalExit, $"{name}: {run.Result.Outcome}: {run.Result.Message}\n{run.Console}");
        Assert.Equal(0, run.Result.GuestStatus);
    }

    [Fact]
    public void Manifest_ListsHelloAndEveryListedElfIsBuilt()
    {
        var entries = GuestManifest.Load();
        Assert.Contains(entries, e => e.Name == "hello");
        foreach (var e in entries)
        {
            GuestManifest.RequireBuilt(e.Elf);
            if (e.HasNative) GuestManifest.RequireBuilt(e.Native);
        }
    }

    public static AsmGuest.Run RunInVm(GuestEntry guest, long instructionLimit = long.MaxValue)
    {
        ulong ram = (ulong)guest.MemMib << 20;
        var image = ElfLoader.LoadFile(GuestManifest.RequireBuilt(guest.Elf), ram);
        return AsmGuest.Execute(image, guest.Vcpus, ram, instructionLimit, TimeSpan.FromMinutes(10));
    }

    private static void CompareWithNative(string name)
    {
        Assert.NotEqual(ManifestBroken, name);
        if (name == NoGuest) return;
        var guest = GuestManifest.Get(name);
        string native = GuestManifest.RequireBuilt(guest.Native);
        GuestManifest.RequireBuilt(guest.Elf);

        var (nativeStatus, nativeOut) = RunNative(native);
        Assert.False(string.IsNullOrEmpty(nativeOut), $"native {name} printed nothing: nothing to compare");
        var run = RunInVm(guest);
        Assert.True(run.Result.IsNormalExit, $"{name}: {run.Result.Outcome}: {run.Result.Message}\nconsole so far:\n{run.Console}");
        Assert.Equal(nativeOut, run.Console);
        Assert.Equal(nativeStatus, run.Result.GuestStatus);
    }

    internal static (int Status, string Output) RunNative(string path)
    {
        var psi = new ProcessStartInfo(path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.Latin1,
        };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {path}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill();
            throw new Xunit.Sdk.XunitException($"native {path} did not end");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result);
    }
}
