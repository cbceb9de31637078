using System.Buffers.Binary;
using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// The interpreter side: guest RAM with the test's own page tables (built here,
/// not by the VMM's boot code), a flat GDT, and the code page of one snippet.
/// Guest-virtual [0, 2 MiB) is identity-mapped with one 2 MiB page (GDT, IDT);
/// the used part of the native region's block, <see cref="RegionLayout.UsedSize"/>
/// bytes, maps with 4 KiB pages to guest-physical <see cref="RegionLayout.GuestPhysicalBase"/>
/// in reverse page order, so that an access straddling two guest-virtual pages
/// touches two guest-physical pages that are not adjacent (an interpreter that
/// runs off the end of the first host page reads the wrong bytes).
/// Guest RAM is small (512 KiB) because a fresh machine is made for every snippet.
/// Control registers and segments are as GUEST-ABI.md states at entry.
/// </summary>
public sealed class GuestMachine : IDisposable
{
    public const ulong RamBytes = 512UL << 10;
    public const ulong Pml4Gpa = 0x1000;
    public const ulong GdtGpa = 0x10000;
    public const ulong IdtGpa = 0x11000;
    public const ulong Cr0Value = 0x8001_0033;  // PE MP ET NE WP PG
    public const ulong Cr4Value = 0x620;        // PAE OSFXSR OSXMMEXCPT
    public const ulong EferValue = 0xD01;       // SCE LME LMA NXE

    private readonly FlatGuestMemory _memory = new(RamBytes);
    private ulong _nextTable = Pml4Gpa + 0x1000;
    private ushort _idtLimit;

    /// <summary>
    /// <paramref name="userMode"/>: the vCPU runs at CPL 3 as a Linux process does (CS 0x33, SS 0x2b,
    /// DS = ES = 0), the region is user-accessible, and the GDT has Linux's x86-64 layout (16
    /// entries: kernel code 0x08 (32-bit) and 0x10, kernel data 0x18, user code 0x23 (32-bit) and
    /// 0x33, user data 0x2b, a TSS at 0x40, empty TLS slots at 0x60-0x70, the per-CPU data segment
    /// at 0x78), so selectors mean on both sides what they mean natively. hlt is #GP there: the
    /// caller reads that as the end (<see cref="EndedAt"/>).
    /// </summary>
    public GuestMachine(ulong regionBase, byte[] codePage, bool userMode = false)
    {
        RegionBase = regionBase;
        UserMode = userMode;
        Map2M(0, 0);
        for (int off = 0; off < RegionLayout.UsedSize; off += 0x1000)
            Map4K(regionBase + (ulong)off, PhysicalOf(off));
        var gdt = _memory.Bytes(new Gpa(GdtGpa), 128);
        if (userMode)
        {
            ulong[] linux = [0, 0x00CF_9B00_0000_FFFF, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF, 0x00CF_FB00_0000_FFFF,
                0x00CF_F300_0000_FFFF, 0x00AF_FB00_0000_FFFF, 0, 0x0000_8900_0000_0067, 0, 0, 0, 0, 0, 0, 0x0040_F500_0000_0000];
            for (int i = 0; i < linux.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(gdt[(8 * i)..], linux[i]);
        }
        else
        {
            BinaryPrimitives.WriteUInt64LittleEndian(gdt[8..], 0x00AF_9A00_0000_FFFF);  // 0x08: 64-bit code, DPL 0
            BinaryPrimitives.WriteUInt64LittleEndian(gdt[16..], 0x00CF_9200_0000_FFFF); // 0x10: data, DPL 0
        }
        Write(RegionLayout.CodeOffset, codePage);
    }

    public ulong RegionBase { get; }
    public bool UserMode { get; }
    public FlatGuestMemory Memory => _memory;

    /// <summary>The translation tier of the machine's vCPUs (<see cref="Vcpu.TierThreshold"/>); set before the first vCPU runs.</summary>
    public int TierThreshold
    {
        get => CodeCache.For(_memory).TierThreshold;
        set => CodeCache.For(_memory).TierThreshold = value;
    }
    public TestExits Exits { get; } = new();

    /// <summary>Guest-physical address behind region offset <paramref name="offset"/> (pages in reverse order).</summary>
    public static ulong PhysicalOf(int offset)
    {
        if (offset < 0 || offset >= RegionLayout.UsedSize) throw new ArgumentOutOfRangeException(nameof(offset));
        int pages = RegionLayout.UsedSize / 0x1000;
        return RegionLayout.GuestPhysicalBase + (ulong)(pages - 1 - offset / 0x1000) * 0x1000 + (ulong)(offset % 0x1000);
    }

    /// <summary>Copies <paramref name="data"/> into guest RAM at region offset <paramref name="offset"/>, page by page.</summary>
    public void Write(int offset, ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            int n = Math.Min(data.Length, 0x1000 - offset % 0x1000);
            data[..n].CopyTo(_memory.Bytes(new Gpa(PhysicalOf(offset)), n));
            data = data[n..];
            offset += n;
        }
    }

    /// <summary>Copies guest RAM at region offset <paramref name="offset"/> into <paramref name="into"/>, page by page.</summary>
    public void Read(int offset, Span<byte> into)
    {
        while (into.Length > 0)
        {
            int n = Math.Min(into.Length, 0x1000 - offset % 0x1000);
            _memory.Bytes(new Gpa(PhysicalOf(offset)), n).CopyTo(into);
            into = into[n..];
            offset += n;
        }
    }

    /// <summary>Installs a 64-bit interrupt gate for <paramref name="vector"/> (CS 0x08) and loads the IDT on later vCPUs.</summary>
    public void SetInterruptGate(int vector, ulong handler)
    {
        var gate = _memory.Bytes(new Gpa(IdtGpa + (ulong)vector * 16), 16);
        gate.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(gate, (ushort)handler);
        BinaryPrimitives.WriteUInt16LittleEndian(gate[2..], 0x08);
        gate[5] = 0x8E; // present, DPL 0, 64-bit interrupt gate
        BinaryPrimitives.WriteUInt16LittleEndian(gate[6..], (ushort)(handler >> 16));
        BinaryPrimitives.WriteUInt32LittleEndian(gate[8..], (uint)(handler >> 32));
        _idtLimit = (ushort)Math.Max(_idtLimit, vector * 16 + 15);
    }

    /// <summary>A fresh vCPU in the GUEST-ABI.md entry state with <paramref name="input"/> loaded and RIP at <paramref name="rip"/>.</summary>
    public Vcpu CreateVcpu(MachineState input, ulong rip)
    {
        Write(RegionLayout.ScratchOffset, input.Scratch);
        Write(RegionLayout.StackWindowOffset, input.StackWindow);
        var link = new VcpuLink(0);
        var vcpu = new Vcpu(0, _memory, link, Exits);
        vcpu.Cr0 = Cr0Value;
        vcpu.Cr4 = Cr4Value;
        vcpu.Efer = EferValue;
        vcpu.Cr3 = Pml4Gpa;
        vcpu.SetGdtr(GdtGpa, UserMode ? (ushort)127 : (ushort)23);
        vcpu.SetIdtr(_idtLimit == 0 ? 0 : IdtGpa, _idtLimit);
        vcpu.SetSegment(SegmentRegister.Cs, UserMode ? (ushort)0x33 : (ushort)0x08, 0);
        vcpu.SetSegment(SegmentRegister.Ds, UserMode ? (ushort)0 : (ushort)0x10, 0);
        vcpu.SetSegment(SegmentRegister.Es, UserMode ? (ushort)0 : (ushort)0x10, 0);
        vcpu.SetSegment(SegmentRegister.Ss, UserMode ? (ushort)0x2b : (ushort)0x10, 0);
        vcpu.SetSegment(SegmentRegister.Fs, 0, 0);
        vcpu.SetSegment(SegmentRegister.Gs, 0, 0);
        for (int i = 0; i < 16; i++) vcpu.SetGpr((Gpr)i, input.Gpr[i]);
        for (int i = 0; i < 16; i++) vcpu.SetXmm(i, input.Xmm[i]);
        vcpu.Mxcsr = input.Mxcsr;
        vcpu.X87Control = input.Fcw;
        vcpu.X87Status = input.Fsw;
        vcpu.X87AbridgedTag = input.Ftw;
        for (int i = 0; i < 8; i++) vcpu.SetX87Register(i, (ulong)input.St[i], (ushort)(input.St[i] >> 64));
        vcpu.Rflags = input.Rflags | 2 | 0x200;   // IF, as in every native user-mode thread (pushf shows it)
        vcpu.Rip = rip;
        return vcpu;
    }

    /// <summary>The state the vCPU and guest RAM hold now.</summary>
    public MachineState Capture(Vcpu vcpu)
    {
        var s = new MachineState();
        for (int i = 0; i < 16; i++) s.Gpr[i] = vcpu.GetGpr((Gpr)i);
        for (int i = 0; i < 16; i++) s.Xmm[i] = vcpu.GetXmm(i);
        s.Rflags = vcpu.Rflags;
        s.Mxcsr = vcpu.Mxcsr;
        s.Fcw = vcpu.X87Control;
        s.Fsw = vcpu.X87Status;
        s.Ftw = vcpu.X87AbridgedTag;
        for (int i = 0; i < 8; i++)
        {
            var (significand, signExponent) = vcpu.GetX87Register(i);
            s.St[i] = new UInt128(signExponent, significand);
        }
        Read(RegionLayout.ScratchOffset, s.Scratch);
        Read(RegionLayout.StackWindowOffset, s.StackWindow);
        return s;
    }

    private void Map2M(ulong gva, ulong gpa)
    {
        ulong pdpt = Table(Pml4Gpa, (gva >> 39) & 511);
        ulong pd = Table(pdpt, (gva >> 30) & 511);
        var pde = _memory.Bytes(new Gpa(pd + ((gva >> 21) & 511) * 8), 8);
        BinaryPrimitives.WriteUInt64LittleEndian(pde, gpa | 0x83); // present, writable, 2 MiB
    }

    private void Map4K(ulong gva, ulong gpa)
    {
        ulong pdpt = Table(Pml4Gpa, (gva >> 39) & 511);
        ulong pd = Table(pdpt, (gva >> 30) & 511);
        ulong pt = Table(pd, (gva >> 21) & 511);
        var pte = _memory.Bytes(new Gpa(pt + ((gva >> 12) & 511) * 8), 8);
        BinaryPrimitives.WriteUInt64LittleEndian(pte, gpa | (UserMode ? 0x7UL : 0x3UL)); // present, writable (user)
    }

    private ulong Table(ulong table, ulong index)
    {
        var entry = _memory.Bytes(new Gpa(table + index * 8), 8);
        ulong e = BinaryPrimitives.ReadUInt64LittleEndian(entry);
        if ((e & 1) != 0) return e & 0x000F_FFFF_FFFF_F000;
        ulong next = _nextTable;
        _nextTable += 0x1000;
        BinaryPrimitives.WriteUInt64LittleEndian(entry, next | 0x7); // present, writable, user (the leaves decide)
        return next;
    }

    public void Dispose() => _memory.Dispose();
}

/// <summary>A VM around the tested vCPU with no devices: port writes are recorded, reads return all ones.</summary>
public sealed class TestExits : IVmExitHandler
{
    public List<(ushort Port, int Size, uint Value)> Outs { get; } = new();
    public void PortOut(Vcpu vcpu, ushort port, int size, uint value) => Outs.Add((port, size, value));
    public uint PortIn(Vcpu vcpu, ushort port, int size) => uint.MaxValue;
    public void Hypercall(Vcpu vcpu) => vcpu.SetGpr(Gpr.Rax, unchecked((ulong)-1000L));
}
