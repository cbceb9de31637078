using Iced.Intel;
using ToyVmm.Loader;
using ToyVmm.Tests.Loader;
using ToyVmm.Vm;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Tests.Vm;

/// <summary>
/// Small guests assembled with Iced inside the test: code at 0x200000 (R|W|X) and a
/// 64 KiB zeroed data area at <see cref="Data"/>. Run in-process on FlatGuestMemory.
/// </summary>
public static class AsmGuest
{
    public const ulong Code = ElfBuilder.Base;
    public const ulong Data = 0x300000;
    public const ulong DataBytes = 0x10000;
    public const ulong Ram = 64UL << 20;

    public static ElfImage Build(Action<Assembler> emit, ulong ram = Ram)
    {
        var a = new Assembler(64);
        emit(a);
        var writer = new MemoryCodeWriter();
        a.Assemble(writer, Code);
        return FromCode(writer.ToArray(), ram);
    }

    public static ElfImage FromCode(byte[] code, ulong ram = Ram)
    {
        var b = new ElfBuilder { Payload = code };
        b.Phdrs[0].Flags = 7;
        b.Phdrs[0].Filesz = b.Phdrs[0].Memsz = (ulong)code.Length;
        b.Phdrs.Add(new ElfBuilder.Phdr { Flags = 6, Offset = 0x1000, Vaddr = Data, Paddr = Data, Filesz = 0, Memsz = DataBytes });
        return ElfLoader.Parse(b.Build(), ram);
    }

    private sealed class MemoryCodeWriter : CodeWriter
    {
        private readonly List<byte> _bytes = new();
        public override void WriteByte(byte value) => _bytes.Add(value);
        public byte[] ToArray() => _bytes.ToArray();
    }

    /// <summary>Emits <c>out 0xF4, al</c> with <paramref name="status"/>.</summary>
    public static void Exit(this Assembler a, byte status)
    {
        a.mov(al, status);
        a.@out(0xF4, al);
    }

    /// <summary>Emits code that prints <paramref name="text"/> on the console one byte at a time.</summary>
    public static void Print(this Assembler a, string text)
    {
        foreach (char c in text)
        {
            a.mov(al, (byte)c);
            a.@out(0xE9, al);
        }
    }

    /// <summary>
    /// Emits <c>if (reg != expected) exit(status)</c>; clobbers R15 and RAX only when
    /// it exits.
    /// </summary>
    public static void ExpectEqual(this Assembler a, AssemblerRegister64 reg, ulong expected, byte status)
    {
        var ok = a.CreateLabel();
        a.mov(r15, expected);
        a.cmp(reg, r15);
        a.je(ok);
        a.Exit(status);
        a.Label(ref ok);
    }

    public sealed record Run(VmResult Result, string Console, VirtualMachine Vm);

    /// <summary>Runs the guest; a run that does not end within <paramref name="hangAfter"/> (default a minute) fails the test as hung.</summary>
    public static Run Execute(ElfImage image, int vcpus = 1, ulong ram = Ram, long instructionLimit = 50_000_000, TimeSpan? hangAfter = null)
    {
        var console = new MemoryStream();
        var vm = VirtualMachine.Create(new VmConfig(ram, vcpus, instructionLimit), image, console);
        using var hang = new CancellationTokenSource(hangAfter ?? TimeSpan.FromMinutes(1));
        var result = vm.Run(hang.Token);
        vm.Dispose();
        if (result.Outcome == VmOutcome.Interrupted)
            throw new Xunit.Sdk.XunitException("the guest did not end (hung VM stopped by the test's guard)");
        return new Run(result, System.Text.Encoding.Latin1.GetString(console.ToArray()), vm);
    }
}
