using System.Runtime.CompilerServices;

namespace ToyVmm.Cpu;

/// <summary>
/// Guest-virtual memory access from handlers. The fast path is one direct-mapped
/// TLB probe (tag = page | CPL bit) and a host load/store; misses, page-crossing
/// accesses and writes to pages holding decoded code go to the slow path in
/// <see cref="Vcpu"/> (MemorySlow.cs). Every access first stores its address in
/// <c>AccessVa</c> (one plain store), so that an invalidator can tell which page a
/// vCPU parked inside a plain mov may hold; every fast-path load checks its entry's
/// tag again after the load (<see cref="LoadChecked"/>), so that a vCPU parked inside
/// a load holds nothing an invalidator must wait for (TlbShootdown.cs).
/// </summary>
internal static unsafe class Mem
{
    public const int TlbBits = 9;
    public const int TlbSize = 1 << TlbBits;
    public const ulong TlbMask = TlbSize - 1;
    public const ulong PageMask = ~0xFFFUL;

    /// <summary>
    /// The effective address of <paramref name="op"/>'s memory operand. No segment term: an
    /// FS/GS base (and 32-bit wrapping) is added by a prefix op into <see cref="CpuState.AddrReg"/>
    /// (Ops/AddressSize.cs), so the common operand pays for neither.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Ea(CpuState* s, Op* op) =>
        Reg.Q(s, op->B) + (Reg.Q(s, op->I) << op->Scale) + (ulong)op->Disp;

    /// <summary>The direct-mapped entry of <paramref name="va"/>'s page: index bits scaled to the 32-byte entry in one shift and mask.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TlbEntry* Entry(TlbEntry* tlb, ulong va) =>
        (TlbEntry*)((byte*)tlb + ((va >> (12 - EntryLog)) & (TlbMask << EntryLog)));

    private const int EntryLog = 5;   // sizeof(TlbEntry) == 32

    /// <summary>
    /// The tag a hit must match for an access of <paramref name="bytes"/> at <paramref name="va"/>:
    /// the page of its last byte, with the CPL bit. An access that crosses into the next page
    /// asks the entry of its first page for the next page's tag, which that entry cannot hold
    /// (consecutive pages have different entries), so the crossing check costs nothing extra.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Tag(CpuState* s, ulong va, int bytes) => ((va + (ulong)(bytes - 1)) & PageMask) | s->TlbCplBit;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Read<T>(CpuState* s, ulong va) where T : struct, ISz
    {
        s->AccessVa = va;   // before the probe: a shootdown reads it (TlbShootdown.cs)
        TlbEntry* e = Entry(s->TlbRead, va);
        ulong tag = Tag(s, va, T.Bits / 8);
        if (e->Tag == tag && LoadChecked<T>(e, tag, (byte*)(va + (ulong)e->Addend), out ulong v)) return v;
        return Vcpu.Of(s).ReadSlow(va, T.Bits / 8);
    }

    /// <summary>
    /// The load of a TLB hit, then a second look at the entry's tag: false when the entry was
    /// shot down meanwhile (the value may come from a frame already freed and reused, and is
    /// discarded; the caller takes the slow path, which translates afresh). The data load is an
    /// acquire, so the tag is read after it: a load that passes the check read the frame before
    /// the invalidator cleared the tag, so before the frame could be freed. That is what lets a
    /// shootdown complete a vCPU parked inside a load from outside (TlbShootdown.cs,
    /// mmu/LOCKING.md "TLB shootdown"). Only the vCPU's own fills set a tag, so it cannot come back.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool LoadChecked<T>(TlbEntry* e, ulong tag, byte* p, out ulong v) where T : struct, ISz
    {
        if (T.Bits == 8) v = Volatile.Read(ref *p);
        else if (T.Bits == 16) v = Volatile.Read(ref *(ushort*)p);
        else if (T.Bits == 32) v = Volatile.Read(ref *(uint*)p);
        else v = Volatile.Read(ref *(ulong*)p);
        return Volatile.Read(ref e->Tag) == tag;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Write<T>(CpuState* s, ulong va, ulong v) where T : struct, ISz
    {
        s->AccessVa = va;   // before the probe: a shootdown reads it (TlbShootdown.cs)
        TlbEntry* e = Entry(s->TlbWrite, va);
        if (e->Tag == Tag(s, va, T.Bits / 8) && *e->Code == 0)
        {
            byte* p = (byte*)(va + (ulong)e->Addend);
            if (T.Bits == 8) *p = (byte)v;
            else if (T.Bits == 16) *(ushort*)p = (ushort)v;
            else if (T.Bits == 32) *(uint*)p = (uint)v;
            else *(ulong*)p = v;
            return;
        }
        Vcpu.Of(s).WriteSlow(va, v, T.Bits / 8);
    }

    /// <summary>Fast path only: false on a TLB miss, a page-crossing access or an entry shot down during the load (the caller then takes its slow variant).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryRead<T>(CpuState* s, ulong va, out ulong v) where T : struct, ISz
    {
        s->AccessVa = va;   // before the probe: a shootdown reads it (TlbShootdown.cs)
        TlbEntry* e = Entry(s->TlbRead, va);
        ulong tag = Tag(s, va, T.Bits / 8);
        if (e->Tag == tag) return LoadChecked<T>(e, tag, (byte*)(va + (ulong)e->Addend), out v);
        v = 0;
        return false;
    }

    /// <summary>Fast path only: false on a TLB miss, a page-crossing access or a page holding code.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryWrite<T>(CpuState* s, ulong va, ulong v) where T : struct, ISz
    {
        s->AccessVa = va;   // before the probe: a shootdown reads it (TlbShootdown.cs)
        TlbEntry* e = Entry(s->TlbWrite, va);
        if (e->Tag == Tag(s, va, T.Bits / 8) && *e->Code == 0)
        {
            byte* p = (byte*)(va + (ulong)e->Addend);
            if (T.Bits == 8) *p = (byte)v;
            else if (T.Bits == 16) *(ushort*)p = (ushort)v;
            else if (T.Bits == 32) *(uint*)p = (uint)v;
            else *(ulong*)p = v;
            return true;
        }
        return false;
    }

    public static ulong Read64(CpuState* s, ulong va) => Read<S64>(s, va);
    public static void Write64(CpuState* s, ulong va, ulong v) => Write<S64>(s, va, v);

    /// <summary>Reads 16 bytes (two qwords, possibly across a page).</summary>
    /// <remarks>On the SSE handlers' path: optimised from its first call, as the handlers are.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static UInt128 Read128(CpuState* s, ulong va)
    {
        ulong lo = Read<S64>(s, va);
        ulong hi = Read<S64>(s, va + 8);
        return new UInt128(hi, lo);
    }

    /// <summary>Writes 16 bytes; both halves are checked before either is written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Write128(CpuState* s, ulong va, UInt128 v)
    {
        if ((va & 0xFFF) > 4096 - 16) Vcpu.Of(s).ProbeWrite(va, 16);
        Write<S64>(s, va, (ulong)v);
        Write<S64>(s, va + 8, (ulong)(v >> 64));
    }

    /// <summary>Fast path of <see cref="RmwPtr"/>: null on a miss, a crossing or a code page.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* TryRmw(CpuState* s, ulong va, int bytes)
    {
        s->AccessVa = va;   // before the probe: a shootdown reads it (TlbShootdown.cs)
        TlbEntry* e = Entry(s->TlbWrite, va);
        if (e->Tag == Tag(s, va, bytes) && *e->Code == 0)
            return (byte*)(va + (ulong)e->Addend);
        return null;
    }

    /// <summary>
    /// Host pointer for a read-modify-write of <paramref name="bytes"/> at <paramref name="va"/>
    /// (write permission checked, code on the page invalidated), or null when the access
    /// crosses a page (callers then take the global lock path).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* RmwPtr(CpuState* s, ulong va, int bytes)
    {
        s->AccessVa = va;   // before the probe: a shootdown reads it (TlbShootdown.cs)
        TlbEntry* e = Entry(s->TlbWrite, va);
        if (e->Tag == Tag(s, va, bytes) && *e->Code == 0)
            return (byte*)(va + (ulong)e->Addend);
        return Vcpu.Of(s).RmwPtrSlow(va, bytes);
    }

    /// <summary>
    /// Host pointer for a locked read-modify-write (Atomic.cs): as <see cref="RmwPtr"/>, but a
    /// write-protected guest page table (shadow MMU) gives its pointer too, so the locked op
    /// runs as one interlocked operation on the backing frame, atomic against another vCPU's
    /// walk setting accessed/dirty bits in the same entry. <paramref name="trapped"/>: it was
    /// such a page; the caller makes its one access and then calls <see cref="LockedWriteDone"/>,
    /// which zaps what the write changed. Null only for an access that crosses a page.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* LockedPtr(CpuState* s, ulong va, int bytes, out bool trapped)
    {
        trapped = false;
        s->AccessVa = va;   // before the probe: a shootdown reads it (TlbShootdown.cs)
        TlbEntry* e = s->TlbWrite + ((va >> 12) & TlbMask);
        if (e->Tag == ((va & PageMask) | s->TlbCplBit) && (va & 0xFFF) <= (ulong)(4096 - bytes) && *e->Code == 0)
            return (byte*)(va + (ulong)e->Addend);
        return Vcpu.Of(s).LockedPtrSlow(va, bytes, out trapped);
    }

    /// <summary>
    /// After the locked op on a pointer <see cref="LockedPtr"/> gave with trapped set: report the
    /// written page-table bytes (<paramref name="wrote"/> false: a failed compare changed nothing).
    /// </summary>
    public static void LockedWriteDone(CpuState* s, ulong va, int bytes, bool wrote = true) => Vcpu.Of(s).FinishLockedWrite(va, bytes, wrote);
}
