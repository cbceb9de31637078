using System.Buffers.Binary;

namespace ToyVmm.Tests.Loader;

/// <summary>Crafts small ELF64 files field by field, so each test can break exactly one rule.</summary>
internal sealed class ElfBuilder
{
    public const ulong Base = 0x200000;

    public sealed class Phdr
    {
        public uint Type = 1;          // PT_LOAD
        public uint Flags = 5;         // R|X
        public ulong Offset = 0x1000;
        public ulong Vaddr = Base;
        public ulong Paddr = Base;
        public ulong Filesz = 0x10;
        public ulong Memsz = 0x10;
        public ulong Align = 0x1000;
    }

    public byte Class = 2, Data = 1, IdentVersion = 1;
    public ushort Type = 2, Machine = 62, Ehsize = 64, Phentsize = 56;
    public uint Version = 1;
    public ulong Entry = Base;
    public ulong Phoff = 64;
    public int? PhnumOverride;
    public List<Phdr> Phdrs = new() { new Phdr() };
    /// <summary>Bytes placed at file offset 0x1000 (the default segment's contents).</summary>
    public byte[] Payload = Enumerable.Range(1, 0x10).Select(i => (byte)i).ToArray();
    public int? TruncateTo;

    /// <summary>A valid image: code at 0x200000 (R|X, 16 bytes) and data at 0x300000 (R|W, 0x20 file bytes in 0x3000 of memory).</summary>
    public static ElfBuilder Valid()
    {
        var b = new ElfBuilder();
        b.Phdrs.Add(new Phdr { Flags = 6, Offset = 0x1000, Vaddr = 0x300000, Paddr = 0x300000, Filesz = 0x10, Memsz = 0x3000 });
        return b;
    }

    public byte[] Build()
    {
        int size = 0x1000 + Math.Max(Payload.Length, 0x10);
        var f = new byte[size];
        f[0] = 0x7F; f[1] = (byte)'E'; f[2] = (byte)'L'; f[3] = (byte)'F';
        f[4] = Class; f[5] = Data; f[6] = IdentVersion;
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(16), Type);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(18), Machine);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(20), Version);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(24), Entry);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(32), Phoff);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(52), Ehsize);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(54), Phentsize);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(56), (ushort)(PhnumOverride ?? Phdrs.Count));
        for (int i = 0; i < Phdrs.Count && 64 + (i + 1) * 56 <= 0x1000; i++)
        {
            var p = Phdrs[i];
            var s = f.AsSpan(64 + i * 56);
            BinaryPrimitives.WriteUInt32LittleEndian(s, p.Type);
            BinaryPrimitives.WriteUInt32LittleEndian(s[4..], p.Flags);
            BinaryPrimitives.WriteUInt64LittleEndian(s[8..], p.Offset);
            BinaryPrimitives.WriteUInt64LittleEndian(s[16..], p.Vaddr);
            BinaryPrimitives.WriteUInt64LittleEndian(s[24..], p.Paddr);
            BinaryPrimitives.WriteUInt64LittleEndian(s[32..], p.Filesz);
            BinaryPrimitives.WriteUInt64LittleEndian(s[40..], p.Memsz);
            BinaryPrimitives.WriteUInt64LittleEndian(s[48..], p.Align);
        }
        Payload.CopyTo(f, 0x1000);
        return TruncateTo is int t ? f[..t] : f;
    }
}
