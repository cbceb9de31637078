namespace ToyVmm.Loader;

/// <summary>
/// The rules of GUEST-ABI.md "Binary format" (and the sanity checks that keep a
/// malformed file from being read out of bounds). Every refusal names one.
/// </summary>
public enum ElfRule
{
    /// <summary>The file is shorter than the ELF64 header.</summary>
    Truncated,
    /// <summary>The file does not start with 0x7F 'E' 'L' 'F'.</summary>
    Magic,
    /// <summary>EI_CLASS must be ELFCLASS64.</summary>
    Class,
    /// <summary>EI_DATA must be ELFDATA2LSB (little endian).</summary>
    Encoding,
    /// <summary>EI_VERSION and e_version must be EV_CURRENT (1).</summary>
    Version,
    /// <summary>e_machine must be EM_X86_64.</summary>
    Machine,
    /// <summary>e_type must be ET_EXEC.</summary>
    Type,
    /// <summary>e_ehsize and e_phentsize must be the ELF64 sizes.</summary>
    HeaderSize,
    /// <summary>e_phnum must be between 1 and <see cref="ElfLoader.MaxProgramHeaders"/>.</summary>
    ProgramHeaderCount,
    /// <summary>The program header table must lie inside the file.</summary>
    ProgramHeaderTable,
    /// <summary>Statically linked: no PT_INTERP.</summary>
    Interpreter,
    /// <summary>Statically linked: no PT_DYNAMIC.</summary>
    Dynamic,
    /// <summary>p_filesz must not exceed p_memsz.</summary>
    FileSizeAboveMemorySize,
    /// <summary>A segment's file bytes [p_offset, p_offset + p_filesz) must lie inside the file.</summary>
    SegmentPastEndOfFile,
    /// <summary>A segment must lie inside [0x100000, ram_bytes - 0x100000): not in the low 1 MiB.</summary>
    SegmentBelowLoadArea,
    /// <summary>A segment must lie inside [0x100000, ram_bytes - 0x100000): not in the VMM's reserved top 1 MiB.</summary>
    SegmentInReservedTop,
    /// <summary>A segment must lie inside guest RAM at all.</summary>
    SegmentOutsideRam,
    /// <summary>Segments must not overlap.</summary>
    SegmentOverlap,
    /// <summary>There must be at least one PT_LOAD with p_memsz &gt; 0.</summary>
    NoLoadableSegment,
    /// <summary>e_entry must lie inside an executable (PF_X) PT_LOAD segment.</summary>
    EntryOutsideCode,
}
