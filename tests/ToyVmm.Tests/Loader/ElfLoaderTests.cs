using ToyVmm.Loader;
using Xunit;

namespace ToyVmm.Tests.Loader;

public class ElfLoaderTests
{
    private const ulong Ram = 64UL << 20;

    private static ElfLoadException Refused(ElfBuilder b, ulong ram = Ram) =>
        Assert.Throws<ElfLoadException>(() => ElfLoader.Parse(b.Build(), ram));

    private static void AssertRefused(ElfBuilder b, ElfRule rule, params string[] fragments)
    {
        var ex = Refused(b);
        Assert.Equal(rule, ex.Rule);
        Assert.Contains($"({ElfLoadException.RuleName(rule)})", ex.Message);
        foreach (var f in fragments) Assert.Contains(f, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Parse_ValidImage_ReturnsSortedSegmentsAndEntry()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs.Reverse();
        var image = ElfLoader.Parse(b.Build(), Ram);
        Assert.Equal(ElfBuilder.Base, image.Entry);
        Assert.Equal(2, image.Segments.Count);
        Assert.Equal(0x200000UL, image.Segments[0].Start.Value);
        Assert.True(image.Segments[0].Executable);
        Assert.Equal(0x300000UL, image.Segments[1].Start.Value);
        Assert.Equal(0x3000UL, image.Segments[1].MemorySize);
        Assert.Equal(0x303000UL, image.HighestEnd.Value);
        Assert.Equal(new byte[] { 1, 2, 3 }, image.FileBytes(image.Segments[0])[..3].ToArray());
    }

    [Fact]
    public void Parse_ZeroMemsizeLoad_IsIgnoredEvenWhenOutOfRange()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs.Add(new ElfBuilder.Phdr { Paddr = 0, Vaddr = 0, Filesz = 0, Memsz = 0 });
        var image = ElfLoader.Parse(b.Build(), Ram);
        Assert.Equal(2, image.Segments.Count);
    }

    [Fact]
    public void Parse_NonLoadHeaders_AreIgnored()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs.Add(new ElfBuilder.Phdr { Type = 0x6474e551 /* PT_GNU_STACK */, Paddr = 0, Memsz = 0 });
        b.Phdrs.Add(new ElfBuilder.Phdr { Type = 4 /* PT_NOTE */, Paddr = 0, Offset = 0xFFFF_FFFF });
        Assert.Equal(2, ElfLoader.Parse(b.Build(), Ram).Segments.Count);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    [InlineData(63)]
    public void Parse_TruncatedHeader_RefusedAsTruncated(int length)
    {
        var b = ElfBuilder.Valid();
        b.TruncateTo = length;
        AssertRefused(b, ElfRule.Truncated, $"{length} bytes");
    }

    [Fact]
    public void Parse_TruncatedProgramHeaders_RefusedAsTableOutsideFile()
    {
        var b = ElfBuilder.Valid();
        b.TruncateTo = 64 + 56 + 10;
        AssertRefused(b, ElfRule.ProgramHeaderTable, "130 bytes");
    }

    [Fact]
    public void Parse_TruncatedSegmentBytes_RefusedAsPastEndOfFile()
    {
        var b = ElfBuilder.Valid();
        b.TruncateTo = 0x1008;
        AssertRefused(b, ElfRule.SegmentPastEndOfFile, "PT_LOAD 0", "0x1000", "4104 bytes");
    }

    [Fact]
    public void Parse_NotElf_RefusedAsMagic()
    {
        var f = ElfBuilder.Valid().Build();
        f[1] = (byte)'X';
        var ex = Assert.Throws<ElfLoadException>(() => ElfLoader.Parse(f, Ram));
        Assert.Equal(ElfRule.Magic, ex.Rule);
        Assert.Contains("7f 58 4c 46", ex.Message);
    }

    [Fact]
    public void Parse_Elf32_RefusedAsClass()
    {
        var b = ElfBuilder.Valid();
        b.Class = 1;
        AssertRefused(b, ElfRule.Class, "ELFCLASS32");
    }

    [Fact]
    public void Parse_BigEndian_RefusedAsEncoding()
    {
        var b = ElfBuilder.Valid();
        b.Data = 2;
        AssertRefused(b, ElfRule.Encoding, "big endian");
    }

    [Fact]
    public void Parse_BadVersion_RefusedAsVersion()
    {
        var b = ElfBuilder.Valid();
        b.Version = 7;
        AssertRefused(b, ElfRule.Version, "e_version is 7");
    }

    [Theory]
    [InlineData(183, "EM_AARCH64")]
    [InlineData(3, "EM_386")]
    [InlineData(0, "e_machine is 0")]
    public void Parse_WrongMachine_RefusedAsMachine(int machine, string named)
    {
        var b = ElfBuilder.Valid();
        b.Machine = (ushort)machine;
        AssertRefused(b, ElfRule.Machine, named);
    }

    [Theory]
    [InlineData(3, "ET_DYN")]
    [InlineData(1, "ET_REL")]
    [InlineData(4, "ET_CORE")]
    public void Parse_WrongType_RefusedAsType(int type, string named)
    {
        var b = ElfBuilder.Valid();
        b.Type = (ushort)type;
        AssertRefused(b, ElfRule.Type, named);
    }

    [Fact]
    public void Parse_WrongPhentsize_RefusedAsHeaderSize()
    {
        var b = ElfBuilder.Valid();
        b.Phentsize = 32;
        AssertRefused(b, ElfRule.HeaderSize, "e_phentsize is 32");
    }

    [Fact]
    public void Parse_NoProgramHeaders_RefusedAsCount()
    {
        var b = ElfBuilder.Valid();
        b.PhnumOverride = 0;
        AssertRefused(b, ElfRule.ProgramHeaderCount, "e_phnum is 0");
    }

    [Fact]
    public void Parse_HugeProgramHeaderCount_RefusedAsCount()
    {
        var b = ElfBuilder.Valid();
        b.PhnumOverride = 0xFFFF;
        AssertRefused(b, ElfRule.ProgramHeaderCount, "65535");
    }

    [Fact]
    public void Parse_ProgramHeaderOffsetPastEnd_RefusedAsTable()
    {
        var b = ElfBuilder.Valid();
        b.Phoff = ulong.MaxValue - 8;
        AssertRefused(b, ElfRule.ProgramHeaderTable, "0xfffffffffffffff7");
    }

    [Fact]
    public void Parse_Interp_RefusedAsNotStatic()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs.Insert(0, new ElfBuilder.Phdr { Type = 3 });
        AssertRefused(b, ElfRule.Interpreter, "PT_INTERP", "program header 0");
    }

    [Fact]
    public void Parse_Dynamic_RefusedAsNotStatic()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs.Add(new ElfBuilder.Phdr { Type = 2 });
        AssertRefused(b, ElfRule.Dynamic, "PT_DYNAMIC", "program header 2");
    }

    [Fact]
    public void Parse_FileszAboveMemsz_Refused()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Filesz = 0x4000;
        AssertRefused(b, ElfRule.FileSizeAboveMemorySize, "PT_LOAD 1", "0x4000", "0x3000");
    }

    [Fact]
    public void Parse_HugeFilesz_RefusedAsPastEndOfFile()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Filesz = ulong.MaxValue;
        b.Phdrs[1].Memsz = ulong.MaxValue;
        AssertRefused(b, ElfRule.SegmentPastEndOfFile, "PT_LOAD 1");
    }

    [Fact]
    public void Parse_OffsetPastEnd_RefusedAsPastEndOfFile()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Offset = 0x100000;
        AssertRefused(b, ElfRule.SegmentPastEndOfFile, "PT_LOAD 1", "0x100000");
    }

    [Fact]
    public void Parse_SegmentInLowMegabyte_RefusedAsBelowLoadArea()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = 0xF0000;
        AssertRefused(b, ElfRule.SegmentBelowLoadArea, "PT_LOAD 1", "0xf0000");
    }

    [Fact]
    public void Parse_SegmentInReservedTop_Refused()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = Ram - 0x100000 - 0x1000;  // ends 0x2000 into the reserved top
        AssertRefused(b, ElfRule.SegmentInReservedTop, "PT_LOAD 1", "0x3eff000", "[0x3f00000, 0x4000000)");
    }

    [Fact]
    public void Parse_SegmentEndingExactlyAtReservedTop_Accepted()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = Ram - 0x100000 - 0x3000;
        Assert.Equal(Ram - 0x100000, ElfLoader.Parse(b.Build(), Ram).Segments[1].End.Value);
    }

    [Fact]
    public void Parse_SegmentBeyondRam_RefusedAsOutsideRam()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = 0x1_0000_0000;
        AssertRefused(b, ElfRule.SegmentOutsideRam, "PT_LOAD 1", "0x100000000", "0x4000000 bytes");
    }

    [Fact]
    public void Parse_SegmentWrappingAddressSpace_RefusedAsOutsideRam()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = 0x200000;
        b.Phdrs[1].Memsz = ulong.MaxValue - 0x100;
        AssertRefused(b, ElfRule.SegmentOutsideRam, "PT_LOAD 1");
    }

    [Fact]
    public void Parse_UsesPaddrNotVaddr()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Vaddr = 0xFFFF_8000_0000_0000;
        Assert.Equal(0x300000UL, ElfLoader.Parse(b.Build(), Ram).Segments[1].Start.Value);
    }

    [Fact]
    public void Parse_OverlappingSegments_RefusedNamingBoth()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = ElfBuilder.Base + 0x8;
        AssertRefused(b, ElfRule.SegmentOverlap, "segment 0 [0x200000, 0x200010)", "segment 1 [0x200008, 0x203008)");
    }

    [Fact]
    public void Parse_AdjacentSegments_Accepted()
    {
        var b = ElfBuilder.Valid();
        b.Phdrs[1].Paddr = b.Phdrs[1].Vaddr = ElfBuilder.Base + 0x10;
        Assert.Equal(2, ElfLoader.Parse(b.Build(), Ram).Segments.Count);
    }

    [Fact]
    public void Parse_OnlyEmptyLoads_RefusedAsNoLoadableSegment()
    {
        var b = ElfBuilder.Valid();
        foreach (var p in b.Phdrs) p.Memsz = p.Filesz = 0;
        AssertRefused(b, ElfRule.NoLoadableSegment);
    }

    [Theory]
    [InlineData(0x300000UL)]     // inside the data segment (not PF_X)
    [InlineData(0x200010UL)]     // one past the code segment
    [InlineData(0UL)]
    public void Parse_EntryOutsideExecutableSegment_Refused(ulong entry)
    {
        var b = ElfBuilder.Valid();
        b.Entry = entry;
        AssertRefused(b, ElfRule.EntryOutsideCode, $"0x{entry:x}");
    }

    [Fact]
    public void Parse_RandomCorruption_NeverThrowsAnythingButElfLoadException()
    {
        var valid = ElfBuilder.Valid().Build();
        var rng = new Random(1234);
        int refused = 0;
        for (int round = 0; round < 3000; round++)
        {
            var f = (byte[])valid.Clone();
            int flips = rng.Next(1, 8);
            for (int k = 0; k < flips; k++)
                f[rng.Next(0, 64 + 3 * 56)] = (byte)rng.Next(256);
            if (rng.Next(4) == 0) f = f[..rng.Next(0, f.Length)];
            try { ElfLoader.Parse(f, Ram); }
            catch (ElfLoadException) { refused++; }
        }
        Assert.True(refused > 1000, $"only {refused} of 3000 corrupted files were refused");
    }

    [Fact]
    public void LoadFile_MissingFile_ThrowsIOException()
    {
        Assert.ThrowsAny<IOException>(() => ElfLoader.LoadFile(Path.Combine(Path.GetTempPath(), "no-such-guest-" + Guid.NewGuid()), Ram));
    }
}
