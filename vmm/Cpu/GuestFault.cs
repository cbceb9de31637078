namespace ToyVmm.Cpu;

/// <summary>Exception vectors the interpreter raises.</summary>
internal static class Vec
{
    public const int DE = 0, DB = 1, BP = 3, OF = 4, BR = 5, UD = 6, NM = 7, DF = 8, TS = 10, NP = 11, SS = 12, GP = 13, PF = 14, MF = 16, AC = 17, XM = 19;

    public static string Name(int v) => v switch
    {
        DE => "#DE", DB => "#DB", 2 => "NMI", BP => "#BP", OF => "#OF", BR => "#BR", UD => "#UD", NM => "#NM", DF => "#DF",
        TS => "#TS", NP => "#NP", SS => "#SS", GP => "#GP", PF => "#PF", MF => "#MF", AC => "#AC", 18 => "#MC", XM => "#XM",
        _ => $"INT{v}",
    };
}

/// <summary>
/// A guest exception raised while executing an instruction. Thrown out of the
/// handler (the instruction has not committed), caught by the run loop, which
/// delivers it through the guest IDT. Rare by construction: the fast path never throws.
/// </summary>
internal sealed class GuestFault : Exception
{
    public GuestFault(int vector, uint errorCode = 0, bool hasErrorCode = false, ulong cr2 = 0, string? detail = null)
        : base(Vec.Name(vector))
    {
        Vector = vector;
        ErrorCode = errorCode;
        HasErrorCode = hasErrorCode;
        Cr2 = cr2;
        Detail = detail;
    }

    public int Vector { get; }
    public uint ErrorCode { get; }
    public bool HasErrorCode { get; }
    public ulong Cr2 { get; }
    /// <summary>Extra words for the VM-error line (e.g. the opcode bytes of a #UD).</summary>
    public string? Detail { get; }

    /// <summary>Software interrupt (int n / int3): delivered with the return RIP after the instruction.</summary>
    public bool Software { get; init; }

    public static GuestFault Gp(uint err = 0) => new(Vec.GP, err, true);
    public static GuestFault Ud(string? detail = null) => new(Vec.UD, detail: detail);
}

/// <summary>The VM cannot continue: Run returns VmError with this one-line message.</summary>
internal sealed class VmErrorException(string message) : Exception(message);
