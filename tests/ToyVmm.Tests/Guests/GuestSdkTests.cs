using System.Diagnostics;
using ToyVmm.Loader;
using ToyVmm.Tests.Vm;
using Xunit;

namespace ToyVmm.Tests.Guests;

/// <summary>
/// The guest SDK (guest/sdk/toyvmm-guest.mk) builds guests outside the tree: a project in a
/// temporary folder whose Makefile is the include and one <c>toyvmm_guest</c> line is built
/// with make and gcc, then run in the VMM in process. Needs the SDK that <c>make -C guest</c>
/// installs into guest/sdk.
/// </summary>
public sealed class GuestSdkTests : IDisposable
{
    private const ulong Ram = 64UL << 20;

    private readonly DirectoryInfo _project = Directory.CreateTempSubdirectory("toyvmm-sdk-");

    public void Dispose() => _project.Delete(recursive: true);

    private static string Sdk => Path.Combine(GuestFiles.RepoRoot, "guest", "sdk");

    // What guest/sdk/example/myguest.c prints with 1 vCPU and 64 MiB (README, "Write your own guest").
    private const string ExampleOutput =
        "Hello from my guest: 1 vCPUs, 64 MiB of RAM\n" +
        "after PAGEOUT: contents kept\n" +
        "after DISCARD: zeroes\n";

    [Fact]
    public void Example_BuiltOutsideTheTree_PrintsItsLinesAndExitsZero()
    {
        CopyExample();
        Make();

        var run = RunInVm("myguest.elf", vcpus: 1);

        Assert.True(run.Result.IsNormalExit, $"{run.Result.Outcome}: {run.Result.Message}\n{run.Console}");
        Assert.Equal(ExampleOutput, run.Console);
        Assert.Equal(0, run.Result.GuestStatus);
    }

    [Fact]
    public void Example_NativeTwin_PrintsWhatTheVmPrints()
    {
        CopyExample();
        Make();

        var (status, output) = Run(Path.Combine(_project.FullName, "myguest.native"), "1", "64");

        Assert.Equal(ExampleOutput, output);
        Assert.Equal(0, status);
    }

    [Fact]
    public void Guest_OfSeveralSourcesReturningStatus_VmExitsWithThatStatus()
    {
        // Two C files, an assembly file and a local header; every vCPU prints a line of its
        // own and vCPU 0's return value is the exit status.
        Write("answer.h", "#include \"rt.h\"\nuint64_t answer(void);\nuint64_t twice(uint64_t);\n");
        Write("answer.c", "#include \"answer.h\"\nuint64_t answer(void) { return twice(21); }\n");
        Write("twice.S",
            ".text\n.globl twice\ntwice:\n    lea (%rdi,%rdi), %rax\n    ret\n" +
            ".section .note.GNU-stack,\"\",@progbits\n");
        Write("main.c",
            "#include \"answer.h\"\n" +
            "static rt_spinlock_t order = RT_SPINLOCK_INIT;\n" +
            "static volatile uint32_t next;\n" +
            "int main(unsigned cpu, unsigned ncpu, uint64_t ram_bytes)\n{\n" +
            "    for (;;) {\n" +
            "        rt_spin_lock(&order);\n" +
            "        if (next == cpu) { printf(\"vCPU %u of %u\\n\", cpu, ncpu); next++; rt_spin_unlock(&order); break; }\n" +
            "        rt_spin_unlock(&order);\n" +
            "    }\n" +
            "    rt_barrier();\n" +
            "    if (cpu != 0) return 0;\n" +
            "    printf(\"answer: %llu\\n\", (unsigned long long)answer());\n" +
            "    return (int)answer();\n}\n");
        Write("Makefile",
            $"TOYVMM_SDK := {Sdk}\n" +
            "include $(TOYVMM_SDK)/toyvmm-guest.mk\n" +
            "$(eval $(call toyvmm_guest,answer,main.c answer.c twice.S))\n");
        Make();

        var run = RunInVm("answer.elf", vcpus: 2);

        Assert.True(run.Result.IsNormalExit, $"{run.Result.Outcome}: {run.Result.Message}\n{run.Console}");
        Assert.Equal("vCPU 0 of 2\nvCPU 1 of 2\nanswer: 42\n", run.Console);
        Assert.Equal(42, run.Result.GuestStatus);
    }

    private void CopyExample()
    {
        foreach (string name in new[] { "Makefile", "myguest.c" })
            File.Copy(Path.Combine(Sdk, "example", name), Path.Combine(_project.FullName, name));
    }

    private void Write(string name, string text) => File.WriteAllText(Path.Combine(_project.FullName, name), text);

    /// <summary>Runs <c>make</c> in the project with TOYVMM_SDK set to the tree's SDK, as README tells a user to.</summary>
    private void Make()
    {
        if (!File.Exists(Path.Combine(Sdk, "lib", "toyvmm.ld")))
            throw new FileNotFoundException("the guest SDK is not built: run `make -C guest` (`make test` does it first)", Sdk);
        var (status, output) = Run("make", "-C", _project.FullName, $"TOYVMM_SDK={Sdk}");
        Assert.True(status == 0, $"make failed with status {status}:\n{output}");
    }

    private AsmGuest.Run RunInVm(string elf, int vcpus)
    {
        var image = ElfLoader.LoadFile(Path.Combine(_project.FullName, elf), Ram);
        return AsmGuest.Execute(image, vcpus, Ram, instructionLimit: 500_000_000, TimeSpan.FromMinutes(5));
    }

    /// <summary>Runs a program to its end; standard error is appended to the output (a failing build shows it).</summary>
    private static (int Status, string Output) Run(string program, params string[] arguments)
    {
        var psi = new ProcessStartInfo(program, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        Process? started;
        try
        {
            started = Process.Start(psi);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot start {program} (the SDK needs make and gcc): {e.Message}", e);
        }
        using var p = started ?? throw new InvalidOperationException($"cannot start {program}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            p.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException($"{program} {string.Join(' ', arguments)} did not end");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
