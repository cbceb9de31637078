using System.Buffers.Binary;
using Iced.Intel;
using ToyVmm.Loader;

namespace ToyVmm.Fuzz;

/// <summary>
/// Guests for the fuzz targets: code at <see cref="Code"/> (read, write, execute) and a
/// 64 KiB zeroed data area at <see cref="Data"/>, built as a real ELF file and loaded by
/// <see cref="ElfLoader"/>, as any guest is.
/// </summary>
internal static class GuestImage
{
    public const ulong Code = 0x200000;
    public const ulong Data = 0x300000;
    public const ulong DataBytes = 0x10000;
    /// <summary>Guest RAM of every fuzzed VM: small, so a run is cheap.</summary>
    public const ulong Ram = 8UL << 20;

    public static ElfImage FromCode(ReadOnlySpan<byte> code)
    {
        const int headers = 64 + 2 * 56, codeOffset = 0x1000;
        var f = new byte[codeOffset + Math.Max(code.Length, 1)];
        f[0] = 0x7F; f[1] = (byte)'E'; f[2] = (byte)'L'; f[3] = (byte)'F';
        f[4] = 2; f[5] = 1; f[6] = 1;
        var s = f.AsSpan();
        BinaryPrimitives.WriteUInt16LittleEndian(s[16..], 2);      // ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(s[18..], 62);     // EM_X86_64
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], Code);   // e_entry
        BinaryPrimitives.WriteUInt64LittleEndian(s[32..], 64);     // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(s[52..], 64);
        BinaryPrimitives.WriteUInt16LittleEndian(s[54..], 56);
        BinaryPrimitives.WriteUInt16LittleEndian(s[56..], 2);
        WritePhdr(s[64..], flags: 7, offset: codeOffset, address: Code, fileBytes: (ulong)Math.Max(code.Length, 1), memoryBytes: (ulong)Math.Max(code.Length, 1));
        WritePhdr(s[(64 + 56)..], flags: 6, offset: codeOffset, address: Data, fileBytes: 0, memoryBytes: DataBytes);
        System.Diagnostics.Debug.Assert(headers <= codeOffset);
        code.CopyTo(s[codeOffset..]);
        return ElfLoader.Parse(f, Ram);
    }

    public static ElfImage Assemble(Action<Assembler> emit)
    {
        var a = new Assembler(64);
        emit(a);
        var writer = new BytesWriter();
        a.Assemble(writer, Code);
        return FromCode(writer.Bytes.ToArray());
    }

    private static void WritePhdr(Span<byte> p, uint flags, ulong offset, ulong address, ulong fileBytes, ulong memoryBytes)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(p, 1);             // PT_LOAD
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], flags);
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], offset);
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], address); // p_vaddr
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], address); // p_paddr
        BinaryPrimitives.WriteUInt64LittleEndian(p[32..], fileBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], memoryBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(p[48..], 0x1000);
    }

    private sealed class BytesWriter : CodeWriter
    {
        public readonly List<byte> Bytes = new();
        public override void WriteByte(byte value) => Bytes.Add(value);
    }

    /// <summary>Reads a little-endian word at <paramref name="offset"/>, zero past the end of <paramref name="data"/>.</summary>
    public static ulong Word(ReadOnlySpan<byte> data, int offset)
    {
        Span<byte> w = stackalloc byte[8];
        w.Clear();
        if (offset < data.Length) data[offset..Math.Min(data.Length, offset + 8)].CopyTo(w);
        return BinaryPrimitives.ReadUInt64LittleEndian(w);
    }
}
