namespace ToyVmm.Cpu;

// Exception and software-interrupt delivery through the 64-bit IDT.
// Nested faults: a fault while delivering becomes #DF; a fault while delivering
// #DF is a triple fault, which stops the VM (VmError). With no IDT (limit 0,
// as at entry), any exception stops the VM with one line naming the vector,
// RIP, error code and, for #PF, CR2.
public sealed unsafe partial class Vcpu
{
    /// <summary>Delivers <paramref name="f"/> raised by the instruction at <paramref name="rip"/>; returns a VmError line when the VM must stop.</summary>
    internal string? DeliverFault(GuestFault f, ulong rip, ulong returnRip)
    {
        if (_s->IdtLimit == 0) return Describe(f, rip, "no IDT loaded");
        try
        {
            DeliverOnce(f, returnRip);
            return null;
        }
        catch (GuestFault second)
        {
            if (f.Vector == Vec.DF) return $"triple fault: {Describe(second, rip, null)} while delivering #DF";
            var df = new GuestFault(Vec.DF, 0, true);
            try
            {
                DeliverOnce(df, rip);
                return null;
            }
            catch (GuestFault third)
            {
                return $"triple fault: {Describe(third, rip, null)} while delivering #DF for {Describe(f, rip, null)}";
            }
        }
    }

    private string Describe(GuestFault f, ulong rip, string? why)
    {
        var sb = new System.Text.StringBuilder();
        sb.Append($"{(f.Software ? "software interrupt" : "unhandled exception")} {Vec.Name(f.Vector)} (vector {f.Vector}) at RIP 0x{rip:x}");
        if (f.HasErrorCode) sb.Append($", error code 0x{f.ErrorCode:x}");
        if (f.Vector == Vec.PF) sb.Append($", CR2 0x{f.Cr2:x}");
        if (f.Detail != null) sb.Append($", {f.Detail}");
        sb.Append($", CPL {_s->Cpl}");
        if (why != null) sb.Append($" ({why})");
        return sb.ToString();
    }

    private void DeliverOnce(GuestFault f, ulong returnRip)
    {
        int v = f.Vector;
        uint idtErr = (uint)(v * 8 + 2);
        if ((ulong)v * 16 + 15 > _s->IdtLimit) throw GuestFault.Gp(idtErr);
        ulong savedBit = _s->TlbCplBit;
        _s->TlbCplBit = 0;   // IDT, GDT, TSS and the new stack are supervisor accesses
        try
        {
            ulong lo = Mem.Read<S64>(_s, _s->IdtBase + (ulong)v * 16);
            ulong hi = Mem.Read<S64>(_s, _s->IdtBase + (ulong)v * 16 + 8);
            int type = (int)((lo >> 40) & 0xF);
            int dpl = (int)((lo >> 45) & 3);
            if (type != 0xE && type != 0xF) throw GuestFault.Gp(idtErr);
            if (f.Software && dpl < _s->Cpl) throw GuestFault.Gp(idtErr);
            if ((lo & (1UL << 47)) == 0) throw new GuestFault(Vec.NP, idtErr, true);
            ulong target = (lo & 0xFFFF) | ((lo >> 48) << 16) | ((hi & 0xFFFF_FFFF) << 32);
            ushort cs = (ushort)(lo >> 16);
            int ist = (int)((lo >> 32) & 7);
            if ((cs & ~3) == 0) throw GuestFault.Gp();
            ulong desc = ReadDescriptor(cs);
            if ((desc & (1UL << 43)) == 0 || (desc & (1UL << 47)) == 0) throw GuestFault.Gp((uint)(cs & ~3));
            int newCpl = (int)((desc >> 45) & 3);
            if (newCpl > _s->Cpl) throw GuestFault.Gp((uint)(cs & ~3));

            ulong oldRsp = _s->Regs[4];
            ushort oldSs = _s->Sel[(int)SegmentRegister.Ss];
            ulong rsp = oldRsp;
            ushort newSs = oldSs;
            if (newCpl < _s->Cpl || ist != 0)
            {
                if (_s->TrSel == 0) throw new GuestFault(Vec.TS, 0, true);
                rsp = Mem.Read<S64>(_s, _s->TrBase + (ist != 0 ? 0x24 + (ulong)(ist - 1) * 8 : 4));
                if (newCpl < _s->Cpl) newSs = 0;
            }
            rsp &= ~0xFUL;
            ulong rflags = Flags.Read(_s);
            ushort oldCs = _s->Sel[(int)SegmentRegister.Cs];
            int n = f.HasErrorCode ? 6 : 5;
            ulong top = rsp - (ulong)n * 8;
            ProbeWrite(top, n * 8);
            Mem.Write<S64>(_s, rsp - 8, oldSs);
            Mem.Write<S64>(_s, rsp - 16, oldRsp);
            Mem.Write<S64>(_s, rsp - 24, rflags);
            Mem.Write<S64>(_s, rsp - 32, oldCs);
            Mem.Write<S64>(_s, rsp - 40, returnRip);
            if (f.HasErrorCode) Mem.Write<S64>(_s, rsp - 48, f.ErrorCode);

            // Committed: nothing below can fault.
            if (v == Vec.PF) _s->Cr2 = f.Cr2;
            _s->Regs[4] = top;
            _s->Sel[(int)SegmentRegister.Ss] = newSs;
            _s->Sel[(int)SegmentRegister.Cs] = (ushort)((cs & ~3) | newCpl);
            ulong clear = Flags.TF | Flags.NT | Flags.RF | 0x20000UL | (type == 0xE ? Flags.IF : 0);
            Flags.Write(_s, rflags & ~clear);
            savedBit = newCpl == 3 ? 1UL : 0;
            _s->Cpl = newCpl;
            _s->Rip = target;
            Interlocked.Increment(ref _exceptionsDelivered);
        }
        finally
        {
            _s->TlbCplBit = savedBit;
        }
    }

    private long _exceptionsDelivered;

    /// <summary>Exceptions and software interrupts delivered through the guest IDT.</summary>
    public long ExceptionsDelivered => Interlocked.Read(ref _exceptionsDelivered);
}
