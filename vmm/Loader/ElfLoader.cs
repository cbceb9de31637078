using System.Buffers.Binary;
using ToyVmm.Mmu;

namespace ToyVmm.Loader;

/// <summary>
/// Reads a guest binary and checks every rule of GUEST-ABI.md "Binary format"
/// before anything is copied into guest memory.
/// </summary>
/// <remarks>
/// The ELF64 header and program headers are parsed by hand: the loader needs only
/// those two fixed-layout tables, and every field must be range-checked against the
/// file and the guest's RAM with a message that names the rule it breaks. A general
/// ELF reader would throw its own exceptions on a truncated or hostile file, and
/// would read sections the loader never needs. Every read below is bounds-checked
/// first, and all address arithmetic is done without overflow, so a malformed file
/// can only produce an <see cref="ElfLoadException"/>.
/// </remarks>
public static class ElfLoader
{
    /// <summary>Start of the area segments may occupy (GUEST-ABI.md "Binary format").</summary>
    public const ulong LoadAreaStart = 0x100000;

    /// <summary>Bytes at the top of guest RAM that belong to the VMM.</summary>
    public const ulong ReservedTopBytes = 0x100000;

    /// <summary>More program headers than this is refused as absurd (gcc and ld emit about ten).</summary>
    public const int MaxProgramHeaders = 256;

    /// <summary>Largest guest file read (a guest's segments must fit in guest RAM anyway).</summary>
    public const long MaxFileBytes = 1L << 30;

    private const int EhdrSize = 64;
    private const int PhdrSize = 56;
    private const ushort EtExec = 2;
    private const ushort EmX86_64 = 62;
    private const uint PtLoad = 1, PtDynamic = 2, PtInterp = 3;
    private const uint PfX = 1;

    /// <summary>Reads <paramref name="path"/> and checks it; I/O failures are reported as <see cref="IOException"/>.</summary>
    public static ElfImage LoadFile(string path, ulong ramBytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (stream.Length > MaxFileBytes)
            throw new ElfLoadException(ElfRule.SegmentOutsideRam,
                $"the file is {stream.Length} bytes, larger than any guest ToyVmm loads ({MaxFileBytes} bytes)");
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return Parse(bytes, ramBytes);
    }

    /// <summary>Checks <paramref name="file"/> against every rule for a guest with <paramref name="ramBytes"/> of RAM.</summary>
    /// <exception cref="ElfLoadException">The file breaks a rule; the message names it.</exception>
    public static ElfImage Parse(byte[] file, ulong ramBytes)
    {
        ReadOnlySpan<byte> f = file;
        if (f.Length < EhdrSize)
            Refuse(ElfRule.Truncated, $"the file is {f.Length} bytes, shorter than the 64-byte ELF64 header");
        if (f[0] != 0x7F || f[1] != (byte)'E' || f[2] != (byte)'L' || f[3] != (byte)'F')
            Refuse(ElfRule.Magic, $"the file starts with {f[0]:x2} {f[1]:x2} {f[2]:x2} {f[3]:x2}, not 7f 45 4c 46 (\\x7fELF)");
        if (f[4] != 2)
            Refuse(ElfRule.Class, $"EI_CLASS is {f[4]} ({(f[4] == 1 ? "ELFCLASS32" : "invalid")}), need 2 (ELFCLASS64)");
        if (f[5] != 1)
            Refuse(ElfRule.Encoding, $"EI_DATA is {f[5]} ({(f[5] == 2 ? "big endian" : "invalid")}), need 1 (little endian)");
        if (f[6] != 1)
            Refuse(ElfRule.Version, $"EI_VERSION is {f[6]}, need 1 (EV_CURRENT)");

        ushort type = U16(f, 16);
        ushort machine = U16(f, 18);
        uint version = U32(f, 20);
        ulong entry = U64(f, 24);
        ulong phoff = U64(f, 32);
        ushort ehsize = U16(f, 52);
        ushort phentsize = U16(f, 54);
        ushort phnum = U16(f, 56);

        if (machine != EmX86_64)
            Refuse(ElfRule.Machine, $"e_machine is {machine}{MachineName(machine)}, need 62 (EM_X86_64)");
        if (type != EtExec)
            Refuse(ElfRule.Type, $"e_type is {type}{TypeName(type)}, need 2 (ET_EXEC, a position-dependent executable)");
        if (version != 1)
            Refuse(ElfRule.Version, $"e_version is {version}, need 1 (EV_CURRENT)");
        if (ehsize != EhdrSize)
            Refuse(ElfRule.HeaderSize, $"e_ehsize is {ehsize}, need 64");
        if (phnum == 0)
            Refuse(ElfRule.ProgramHeaderCount, "e_phnum is 0: the file has no program headers, so nothing to load");
        if (phnum > MaxProgramHeaders)
            Refuse(ElfRule.ProgramHeaderCount, $"e_phnum is {phnum}, more than the {MaxProgramHeaders} ToyVmm accepts");
        if (phentsize != PhdrSize)
            Refuse(ElfRule.HeaderSize, $"e_phentsize is {phentsize}, need 56");
        ulong tableBytes = (ulong)phnum * PhdrSize;
        if (phoff > (ulong)f.Length || tableBytes > (ulong)f.Length - phoff)
            Refuse(ElfRule.ProgramHeaderTable,
                $"the program header table [0x{phoff:x}, +0x{tableBytes:x}) runs past the end of the file ({f.Length} bytes)");

        var segments = ReadSegments(f, (int)phoff, phnum, ramBytes);
        CheckDisjoint(segments);

        bool entryInCode = segments.Any(s => s.Executable && entry >= s.Start.Value && entry < s.End.Value);
        if (!entryInCode)
            Refuse(ElfRule.EntryOutsideCode, $"e_entry 0x{entry:x} is not inside any executable (PF_X) PT_LOAD segment");
        return new ElfImage(file, entry, segments);
    }

    private static List<ElfSegment> ReadSegments(ReadOnlySpan<byte> f, int phoff, int phnum, ulong ramBytes)
    {
        ulong loadEnd = ramBytes > ReservedTopBytes ? ramBytes - ReservedTopBytes : 0;
        var segments = new List<ElfSegment>();
        for (int i = 0; i < phnum; i++)
        {
            var ph = f.Slice(phoff + i * PhdrSize, PhdrSize);
            uint ptype = U32(ph, 0);
            if (ptype == PtInterp)
                Refuse(ElfRule.Interpreter, $"program header {i} is PT_INTERP: the guest must be statically linked");
            if (ptype == PtDynamic)
                Refuse(ElfRule.Dynamic, $"program header {i} is PT_DYNAMIC: the guest must be statically linked");
            if (ptype != PtLoad)
                continue;

            uint flags = U32(ph, 4);
            ulong offset = U64(ph, 8);
            ulong paddr = U64(ph, 24);
            ulong filesz = U64(ph, 32);
            ulong memsz = U64(ph, 40);
            if (memsz == 0)
                continue;   // GUEST-ABI.md: a PT_LOAD with p_memsz == 0 is ignored.

            if (filesz > memsz)
                Refuse(ElfRule.FileSizeAboveMemorySize, $"PT_LOAD {i}: p_filesz 0x{filesz:x} is larger than p_memsz 0x{memsz:x}");
            if (offset > (ulong)f.Length || filesz > (ulong)f.Length - offset)
                Refuse(ElfRule.SegmentPastEndOfFile,
                    $"PT_LOAD {i}: file bytes [0x{offset:x}, +0x{filesz:x}) run past the end of the file ({f.Length} bytes)");

            bool wraps = memsz > ulong.MaxValue - paddr;
            ulong end = wraps ? ulong.MaxValue : paddr + memsz;
            string range = wraps ? $"[0x{paddr:x}, +0x{memsz:x})" : $"[0x{paddr:x}, 0x{end:x})";
            if (paddr < LoadAreaStart)
                Refuse(ElfRule.SegmentBelowLoadArea,
                    $"PT_LOAD {i} at p_paddr {range} starts below 0x{LoadAreaStart:x}: the low 1 MiB is not for segments");
            if (wraps || end > ramBytes)
                Refuse(ElfRule.SegmentOutsideRam,
                    $"PT_LOAD {i} at p_paddr {range} lies beyond guest RAM (0x{ramBytes:x} bytes)");
            if (end > loadEnd)
                Refuse(ElfRule.SegmentInReservedTop,
                    $"PT_LOAD {i} at p_paddr {range} reaches into the VMM's reserved top 1 MiB [0x{loadEnd:x}, 0x{ramBytes:x})");

            segments.Add(new ElfSegment(i, new Gpa(paddr), offset, filesz, memsz, (flags & PfX) != 0));
        }
        if (segments.Count == 0)
            Refuse(ElfRule.NoLoadableSegment, "no PT_LOAD segment with p_memsz > 0");
        segments.Sort((a, b) => a.Start.Value.CompareTo(b.Start.Value));
        return segments;
    }

    private static void CheckDisjoint(List<ElfSegment> sorted)
    {
        for (int i = 1; i < sorted.Count; i++)
        {
            if (sorted[i].Start.Value < sorted[i - 1].End.Value)
                Refuse(ElfRule.SegmentOverlap, $"PT_LOAD {sorted[i - 1]} and PT_LOAD {sorted[i]} overlap");
        }
    }

    private static string MachineName(ushort m) => m switch
    {
        3 => " (EM_386)",
        40 => " (EM_ARM)",
        183 => " (EM_AARCH64)",
        243 => " (EM_RISCV)",
        _ => "",
    };

    private static string TypeName(ushort t) => t switch
    {
        0 => " (ET_NONE)",
        1 => " (ET_REL, an object file)",
        3 => " (ET_DYN, a shared object or PIE)",
        4 => " (ET_CORE)",
        _ => "",
    };

    private static ushort U16(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt16LittleEndian(s[at..]);
    private static uint U32(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt32LittleEndian(s[at..]);
    private static ulong U64(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt64LittleEndian(s[at..]);

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void Refuse(ElfRule rule, string detail) => throw new ElfLoadException(rule, detail);
}
