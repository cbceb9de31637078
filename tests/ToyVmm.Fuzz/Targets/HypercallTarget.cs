using Iced.Intel;
using ToyVmm.Devices;
using ToyVmm.Vm;
using static Iced.Intel.AssemblerRegisters;

namespace ToyVmm.Fuzz;

/// <summary>
/// The hypercall interface (GUEST-ABI.md "Hypercalls"): a guest that fills sixteen data
/// pages with a known word, makes up to 32 hypercalls with fuzzed arguments, and then
/// checks every page. The input is
/// <code>
///   byte 0       memory mode (index into MemoryModes.All, modulo its count)
///   then records of 25 bytes: selector, A, B, C (little-endian words)
///     selector % 4 = 0: PAGEOUT(RBX=A, RCX=B)    1: DISCARD(RBX=A, RCX=B)
///                    2: PHASE(RBX=A)             3: RAX=C, RBX=A, RCX=B (any number)
/// </code>
/// Checked inside the guest: every result is a page count (not negative) or one of the
/// documented errors (-22, -12, -1000); every data page still holds its word or reads
/// zero (discarded), never anything else. Unless a DISCARD may have dropped the guest's
/// own code, the guest must then exit with status 0; in every case the run ends in a
/// guest-caused way with a consistent host (<see cref="GuestRun"/>).
/// </summary>
internal static class HypercallTarget
{
    public static readonly FuzzTarget Target = new("hypercall",
        "up to 32 PAGEOUT/DISCARD/PHASE/any calls with fuzzed arguments: documented results, pages kept or zero", Run);

    public const int RecordBytes = 25;
    public const int MaxCalls = 32;
    public const int DataPages = 16;
    /// <summary>A PHASE name the guest writes at the start of its last data page ("fuzz").</summary>
    public const ulong PhaseName = GuestImage.Data + (DataPages - 1) * 0x1000 + 0x100;
    private const byte BadResult = 0xED, BadPage = 0xEE;

    private static void Run(byte[] data)
    {
        if (data.Length == 0) return;
        var mode = MemoryModes.All[data[0] % MemoryModes.All.Count];
        var calls = new List<(ulong Rax, ulong Rbx, ulong Rcx)>();
        for (int at = 1; at + RecordBytes <= data.Length && calls.Count < MaxCalls; at += RecordBytes)
        {
            ulong a = GuestImage.Word(data, at + 1), b = GuestImage.Word(data, at + 9), c = GuestImage.Word(data, at + 17);
            calls.Add((data[at] % 4) switch
            {
                0 => (VmDevices.HypercallPageOut, a, b),
                1 => (VmDevices.HypercallDiscard, a, b),
                2 => (VmDevices.HypercallPhase, a, b),
                _ => (c, a, b),
            });
        }
        var image = GuestImage.Assemble(a => Emit(a, calls));
        var result = GuestRun.Run(image, mode, vcpus: 1, instructionLimit: 1_000_000, "hypercalls");

        ulong codeEnd = GuestImage.Code + (ulong)image.Segments[0].MemorySize;
        bool codeMayBeDiscarded = calls.Any(c => c.Rax == VmDevices.HypercallDiscard
            && c.Rbx < codeEnd && (c.Rcx > ulong.MaxValue - c.Rbx || c.Rbx + c.Rcx > GuestImage.Code));
        if (codeMayBeDiscarded) return;
        if (result.Outcome != VmOutcome.ExitPort || result.GuestStatus != 0)
            throw new FuzzFinding(result.GuestStatus switch
            {
                BadResult when result.Outcome == VmOutcome.ExitPort => "a hypercall returned a result GUEST-ABI.md does not list",
                BadPage when result.Outcome == VmOutcome.ExitPort => "a data page read back something the guest never wrote",
                _ => $"the guest did not finish: {result.Outcome} {result.GuestStatus}: {result.Message}",
            } + $" ({mode}; calls: {string.Join(", ", calls.Select(c => $"rax=0x{c.Rax:x} rbx=0x{c.Rbx:x} rcx=0x{c.Rcx:x}"))})");
    }

    private static void Emit(Assembler a, List<(ulong Rax, ulong Rbx, ulong Rcx)> calls)
    {
        for (int i = 0; i < DataPages; i++)
        {
            a.mov(rax, (ulong)i + 1);
            a.mov(rdi, GuestImage.Data + (ulong)i * 0x1000);
            a.mov(__qword_ptr[rdi], rax);
        }
        a.mov(rdi, PhaseName);
        a.mov(__dword_ptr[rdi], 0x7a7a7566);   // "fuzz", then the zeroed page ends it
        foreach (var (rax_, rbx_, rcx_) in calls)
        {
            var ok = a.CreateLabel();
            a.mov(rax, rax_);
            a.mov(rbx, rbx_);
            a.mov(rcx, rcx_);
            a.vmcall();
            a.test(rax, rax);
            a.jns(ok);
            a.cmp(rax, -22);
            a.je(ok);
            a.cmp(rax, -12);
            a.je(ok);
            a.cmp(rax, -1000);
            a.je(ok);
            Exit(a, BadResult);
            a.Label(ref ok);
        }
        for (int i = 0; i < DataPages; i++)
        {
            var ok = a.CreateLabel();
            a.mov(rdi, GuestImage.Data + (ulong)i * 0x1000);
            a.mov(rax, __qword_ptr[rdi]);
            a.test(rax, rax);
            a.je(ok);
            a.cmp(rax, i + 1);
            a.je(ok);
            Exit(a, BadPage);
            a.Label(ref ok);
        }
        Exit(a, 0);
    }

    private static void Exit(Assembler a, byte status)
    {
        a.mov(al, status);
        a.@out(0xF4, al);
        a.hlt();
    }
}
