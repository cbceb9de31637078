using System.Diagnostics;

namespace ToyVmm.Cpu;

// System-state changes that need the managed side: port I/O and hypercalls
// (outside guest mode), control registers, MSRs, descriptor loads, syscall/sysret, iretq.
public sealed unsafe partial class Vcpu
{
    private readonly long _tscBase;

    internal const uint MsrEfer = 0xC0000080, MsrStar = 0xC0000081, MsrLstar = 0xC0000082, MsrCstar = 0xC0000083, MsrFmask = 0xC0000084;
    internal const uint MsrFsBase = 0xC0000100, MsrGsBase = 0xC0000101, MsrKernelGsBase = 0xC0000102, MsrTscAux = 0xC0000103;
    internal const uint MsrTsc = 0x10, MsrApicBase = 0x1B, MsrPat = 0x277, MsrMiscEnable = 0x1A0;

    /// <summary>Guest TSC: nanoseconds since this vCPU was created (1 GHz, monotonic).</summary>
    internal ulong Tsc()
    {
        long ticks = Stopwatch.GetTimestamp() - _tscBase;
        return (ulong)(ticks * (1_000_000_000.0 / Stopwatch.Frequency));
    }

    // Exits may block: leave guest mode around them, then handle what arrived meanwhile.
    internal void PortOut(ushort port, int size, uint value)
    {
        Link.ExitGuest();
        try { Exits.PortOut(this, port, size, value); }
        finally { Reenter(); }
    }

    internal uint PortIn(ushort port, int size)
    {
        Link.ExitGuest();
        try { return Exits.PortIn(this, port, size); }
        finally { Reenter(); }
    }

    internal void Hypercall()
    {
        Link.ExitGuest();
        try { Exits.Hypercall(this); }
        finally { Reenter(); }
    }

    private void Reenter()
    {
        Link.EnterGuest();
        ServiceRequests();
    }

    internal void WriteCr(int n, ulong v)
    {
        switch (n)
        {
            case 0:
                // SDM, MOV to CR0: reserved high bits, PG without PE, NW without CD; in 64-bit
                // mode PG cannot be cleared (only compatibility mode may leave long mode, and
                // the interpreter has none); PG with LME needs PAE.
                if ((v >> 32) != 0) throw GuestFault.Gp();
                if ((v & Cr0Pg) != 0 && (v & Cr0Pe) == 0) throw GuestFault.Gp();
                if ((v & Cr0Nw) != 0 && (v & Cr0Cd) == 0) throw GuestFault.Gp();
                if ((_s->Efer & EferLma) != 0 && (v & Cr0Pg) == 0) throw GuestFault.Gp();
                if ((v & Cr0Pg) != 0 && (_s->Cr0 & Cr0Pg) == 0 && (_s->Efer & EferLme) != 0 && (_s->Cr4 & 0x20) == 0) throw GuestFault.Gp();
                _s->Cr0 = v | 0x10;
                UpdateSseFault();
                if ((_s->Efer & EferLme) != 0 && (v & Cr0Pg) != 0) _s->Efer |= EferLma;
                FlushTlb();
                break;
            case 2: _s->Cr2 = v; break;
            case 3: _s->Cr3 = v; FlushTlb(); break;
            case 4:
                if ((v & 0x20) == 0 && (_s->Efer & EferLma) != 0) throw GuestFault.Gp();   // PAE cannot be cleared in long mode
                _s->Cr4 = v;
                UpdateSseFault();
                FlushTlb();
                break;
            default: _s->Cr8 = v & 15; break;
        }
    }

    internal ulong? ReadMsr(uint msr) => msr switch
    {
        MsrEfer => _s->Efer,
        MsrStar => _s->Star,
        MsrLstar => _s->Lstar,
        MsrCstar => _s->Cstar,
        MsrFmask => _s->Fmask,
        MsrFsBase => _s->SegBase[1],
        MsrGsBase => _s->SegBase[2],
        MsrKernelGsBase => _s->KernelGsBase,
        MsrTscAux => _s->TscAux,
        MsrTsc => Tsc(),
        MsrApicBase => _s->ApicBase,
        MsrPat => _s->Pat,
        MsrMiscEnable => 1,
        _ => null,
    };

    internal bool WriteMsr(uint msr, ulong v)
    {
        switch (msr)
        {
            case MsrEfer:
                // Reserved bits, or LME changed while paging is on: #GP(0). LMA is read-only (kept).
                if ((v & ~(EferSce | EferLme | EferLma | EferNxe)) != 0) return false;
                if ((_s->Cr0 & Cr0Pg) != 0 && ((v ^ _s->Efer) & EferLme) != 0) return false;
                _s->Efer = (v & ~EferLma) | (_s->Efer & EferLma);
                FlushTlb();
                return true;
            case MsrStar: _s->Star = v; return true;
            case MsrLstar: if (!Canonical(v)) return false; _s->Lstar = v; return true;
            case MsrCstar: _s->Cstar = v; return true;
            case MsrFmask: _s->Fmask = v & 0xFFFF_FFFF; return true;
            case MsrFsBase: if (!Canonical(v)) return false; _s->SegBase[1] = v; return true;
            case MsrGsBase: if (!Canonical(v)) return false; _s->SegBase[2] = v; return true;
            case MsrKernelGsBase: if (!Canonical(v)) return false; _s->KernelGsBase = v; return true;
            case MsrTscAux: _s->TscAux = v & 0xFFFF_FFFF; return true;
            case MsrApicBase: _s->ApicBase = v; return true;
            case MsrPat: _s->Pat = v; return true;
            case MsrMiscEnable: return true;
            default: return false;
        }
    }

    /// <summary>Reads the 8-byte GDT descriptor of <paramref name="sel"/> (#GP(sel) when outside the GDT).</summary>
    internal ulong ReadDescriptor(ushort sel, int bytes = 8)
    {
        ulong off = (ulong)(sel & ~7);
        if ((sel & 4) != 0 || off + (ulong)bytes - 1 > _s->GdtLimit) throw GuestFault.Gp((uint)(sel & ~3));
        ulong saved = _s->TlbCplBit;
        _s->TlbCplBit = 0;
        try { return Mem.Read<S64>(_s, _s->GdtBase + off); }
        finally { _s->TlbCplBit = saved; }
    }

    internal void LoadSegment(SegmentRegister seg, ushort sel)
    {
        if ((sel & ~3) == 0)
        {
            if (seg == SegmentRegister.Ss && _s->Cpl == 3) throw GuestFault.Gp();
            _s->Sel[(int)seg] = sel;
            if (seg == SegmentRegister.Fs) _s->SegBase[1] = 0;
            if (seg == SegmentRegister.Gs) _s->SegBase[2] = 0;
            return;
        }
        ulong d = ReadDescriptor(sel);
        if ((d & (1UL << 44)) == 0) throw GuestFault.Gp((uint)(sel & ~3));          // system descriptor
        if ((d & (1UL << 47)) == 0) throw new GuestFault(seg == SegmentRegister.Ss ? Vec.SS : Vec.NP, (uint)(sel & ~3), true);
        _s->Sel[(int)seg] = sel;
        ulong b = ((d >> 16) & 0xFFFFFF) | ((d >> 56) << 24);
        if (seg == SegmentRegister.Fs) _s->SegBase[1] = b;
        if (seg == SegmentRegister.Gs) _s->SegBase[2] = b;
    }

    internal void LoadTaskRegister(ushort sel)
    {
        if ((sel & ~3) == 0) throw GuestFault.Gp();
        ulong lo = ReadDescriptor(sel, 16);
        ulong hi;
        ulong saved = _s->TlbCplBit;
        _s->TlbCplBit = 0;
        try { hi = Mem.Read<S64>(_s, _s->GdtBase + (ulong)(sel & ~7) + 8); }
        finally { _s->TlbCplBit = saved; }
        int type = (int)((lo >> 40) & 0xF);
        if (type != 9) throw GuestFault.Gp((uint)(sel & ~3));                     // available 64-bit TSS
        if ((lo & (1UL << 47)) == 0) throw new GuestFault(Vec.NP, (uint)(sel & ~3), true);
        _s->TrBase = ((lo >> 16) & 0xFFFFFF) | ((lo >> 56) << 24) | (hi << 32);
        _s->TrLimit = (ushort)(lo & 0xFFFF);
        _s->TrSel = sel;
        _s->TlbCplBit = 0;
        try { Mem.Write<S64>(_s, _s->GdtBase + (ulong)(sel & ~7), lo | (2UL << 40)); }   // mark busy
        finally { _s->TlbCplBit = saved; }
    }

    internal void Syscall(ulong nextRip)
    {
        if ((_s->Efer & EferSce) == 0) throw GuestFault.Ud();
        ulong f = Flags.Read(_s);
        _s->Regs[1] = nextRip;
        _s->Regs[11] = f & ~Flags.RF;
        Flags.Write(_s, f & ~_s->Fmask & ~Flags.RF);
        ushort cs = (ushort)((_s->Star >> 32) & 0xFFFC);
        _s->Sel[(int)SegmentRegister.Cs] = cs;
        _s->Sel[(int)SegmentRegister.Ss] = (ushort)(cs + 8);
        SetCpl(0);
        _s->Rip = _s->Lstar;
    }

    internal void Sysret()
    {
        if ((_s->Efer & EferSce) == 0) throw GuestFault.Ud();
        if (_s->Cpl != 0) throw GuestFault.Gp();
        ulong rip = _s->Regs[1];
        if (!Canonical(rip)) throw GuestFault.Gp();
        ushort b = (ushort)(_s->Star >> 48);
        Flags.Write(_s, (_s->Regs[11] & 0x3C7FD7) | 2);
        _s->Sel[(int)SegmentRegister.Cs] = (ushort)((b + 16) | 3);
        _s->Sel[(int)SegmentRegister.Ss] = (ushort)((b + 8) | 3);
        SetCpl(3);
        _s->Rip = rip;
    }

    /// <summary>
    /// Far jmp/call through memory (m16:16, m16:32, m16:64 by <paramref name="size"/>, the offset's
    /// bytes; the selector follows it): the SDM's checks for a direct transfer to a code segment in
    /// 64-bit mode, then CS = selector with RPL = CPL and RIP = the zero-extended offset; a call
    /// first pushes CS and the return address, each <paramref name="size"/> bytes. Faults: a null
    /// selector #GP(0); outside the GDT (or in the LDT, which is always null) #GP(selector); a
    /// data segment or system descriptor (call gates, TSS: not modelled) #GP(selector); a
    /// non-conforming segment with RPL &gt; CPL or DPL != CPL, or a conforming one with DPL &gt;
    /// CPL, #GP(selector); not present #NP(selector); a non-canonical target #GP(0); a stack
    /// fault on the pushes. Nothing changes before every check has passed. A 32-bit code
    /// segment (compatibility mode, which the interpreter does not have) stops the VM.
    /// </summary>
    internal void FarTransfer(ulong ea, int size, bool call, ulong returnRip)
    {
        ulong offset = size switch { 2 => Mem.Read<S16>(_s, ea), 4 => Mem.Read<S32>(_s, ea), _ => Mem.Read<S64>(_s, ea) };
        ushort sel = (ushort)Mem.Read<S16>(_s, ea + (ulong)size);
        uint err = (uint)(sel & 0xFFFC);
        if ((sel & 0xFFFC) == 0) throw GuestFault.Gp();
        ulong d = ReadDescriptor(sel);
        if ((d & (1UL << 44)) == 0 || (d & (1UL << 43)) == 0) throw GuestFault.Gp(err);   // system descriptor or data segment
        int dpl = (int)((d >> 45) & 3), rpl = sel & 3, cpl = _s->Cpl;
        if ((d & (1UL << 42)) != 0 ? dpl > cpl : rpl > cpl || dpl != cpl) throw GuestFault.Gp(err);
        if ((d & (1UL << 47)) == 0) throw new GuestFault(Vec.NP, err, true);
        bool longMode = (d & (1UL << 53)) != 0;
        if (longMode && (d & (1UL << 54)) != 0) throw GuestFault.Gp(err);                  // L and D both set: reserved
        if (!longMode)
            throw new VmErrorException($"far {(call ? "call" : "jmp")} to selector 0x{sel:x}, a compatibility-mode code segment: the interpreter has no compatibility mode");
        if (!Canonical(offset)) throw GuestFault.Gp();
        ushort cs = (ushort)((sel & ~3) | cpl);
        if (call)
        {
            ulong rsp = _s->Regs[4] - 2 * (ulong)size;
            ulong oldCs = _s->Sel[(int)SegmentRegister.Cs];
            ProbeWrite(rsp, 2 * size);
            if (size == 8) { Mem.Write<S64>(_s, rsp + 8, oldCs); Mem.Write<S64>(_s, rsp, returnRip); }
            else if (size == 4) { Mem.Write<S32>(_s, rsp + 4, oldCs); Mem.Write<S32>(_s, rsp, returnRip); }
            else { Mem.Write<S16>(_s, rsp + 2, oldCs); Mem.Write<S16>(_s, rsp, returnRip); }
            _s->Regs[4] = rsp;
        }
        _s->Sel[(int)SegmentRegister.Cs] = cs;
        _s->Rip = offset;
    }

    /// <summary>
    /// retf [imm16] with operand size <paramref name="size"/> (8: retfq, 4: retf, 2: retfw): pops RIP
    /// (zero-extended) and CS, each from a slot of that size; a return to an outer level also pops
    /// RSP and SS.
    /// </summary>
    internal void FarReturn(ushort release, int size = 8)
    {
        ulong rsp = _s->Regs[4];
        ulong Pop(ulong at) => size switch { 2 => Mem.Read<S16>(_s, at), 4 => Mem.Read<S32>(_s, at), _ => Mem.Read<S64>(_s, at) };
        ulong rip = Pop(rsp);
        ushort cs = (ushort)Pop(rsp + (ulong)size);
        int rpl = cs & 3;
        if ((cs & ~3) == 0 || rpl < _s->Cpl || (rpl != 0 && rpl != 3)) throw GuestFault.Gp((uint)(cs & ~3));
        ulong desc = ReadDescriptor(cs);
        if ((desc & (1UL << 43)) == 0 || (desc & (1UL << 53)) == 0) throw GuestFault.Gp((uint)(cs & ~3));   // 64-bit code only
        if ((desc & (1UL << 47)) == 0) throw new GuestFault(Vec.NP, (uint)(cs & ~3), true);
        if (!Canonical(rip)) throw GuestFault.Gp();
        rsp += 2UL * (ulong)size + release;
        if (rpl > _s->Cpl)
        {
            ulong nrsp = Pop(rsp);
            ushort ss = (ushort)Pop(rsp + (ulong)size);
            _s->Sel[(int)SegmentRegister.Ss] = ss;
            rsp = nrsp + release;
        }
        _s->Regs[4] = rsp;
        _s->Sel[(int)SegmentRegister.Cs] = cs;
        SetCpl(rpl);
        _s->Rip = rip;
    }

    /// <summary>
    /// iretq (64-bit mode): pops RIP, CS, RFLAGS, RSP and SS, with the SDM's protected-mode
    /// checks on the selectors as far as segments are modelled: CS non-null, inside the GDT, a
    /// present 64-bit code segment with RPL >= CPL and DPL matching RPL (conforming: DPL <= RPL);
    /// SS null only when returning to CPL 0, otherwise inside the GDT, RPL = DPL = the new CPL,
    /// writable data, present. Nothing is changed before every check has passed.
    /// </summary>
    internal void Iret()
    {
        ulong rsp = _s->Regs[4];
        ulong rip = Mem.Read<S64>(_s, rsp);
        ushort cs = (ushort)Mem.Read<S64>(_s, rsp + 8);
        ulong fl = Mem.Read<S64>(_s, rsp + 16);
        ulong nrsp = Mem.Read<S64>(_s, rsp + 24);
        ushort ss = (ushort)Mem.Read<S64>(_s, rsp + 32);
        int cpl = cs & 3;
        uint csErr = (uint)(cs & 0xFFFC), ssErr = (uint)(ss & 0xFFFC);
        if ((cs & 0xFFFC) == 0) throw GuestFault.Gp();
        if (cpl < _s->Cpl || (cpl != 0 && cpl != 3)) throw GuestFault.Gp(csErr);
        ulong cd = ReadDescriptor(cs);                                          // #GP(CS) beyond the GDT limit
        int csDpl = (int)((cd >> 45) & 3);
        bool conforming = (cd & (1UL << 42)) != 0;
        if ((cd & (1UL << 44)) == 0 || (cd & (1UL << 43)) == 0) throw GuestFault.Gp(csErr);   // not a code segment
        if (conforming ? csDpl > cpl : csDpl != cpl) throw GuestFault.Gp(csErr);
        if ((cd & (1UL << 53)) == 0 || (cd & (1UL << 54)) != 0) throw GuestFault.Gp(csErr);    // 64-bit code only (L=1, D=0)
        if ((cd & (1UL << 47)) == 0) throw new GuestFault(Vec.NP, csErr, true);
        if ((ss & 0xFFFC) == 0)
        {
            if (cpl == 3 || (ss & 3) != cpl) throw GuestFault.Gp();                // null SS only to CPL 0 (64-bit mode)
        }
        else
        {
            ulong sd = ReadDescriptor(ss);                                      // #GP(SS) beyond the GDT limit
            if ((ss & 3) != cpl) throw GuestFault.Gp(ssErr);
            if ((sd & (1UL << 44)) == 0 || (sd & (1UL << 43)) != 0 || (sd & (1UL << 41)) == 0) throw GuestFault.Gp(ssErr);   // writable data
            if ((int)((sd >> 45) & 3) != cpl) throw GuestFault.Gp(ssErr);
            if ((sd & (1UL << 47)) == 0) throw new GuestFault(Vec.SS, ssErr, true);
        }
        if (!Canonical(rip)) throw GuestFault.Gp();
        ulong keep = _s->Cpl == 0 ? 0 : Flags.IOPL | Flags.IF;
        ulong cur = Flags.Read(_s);
        Flags.Write(_s, (fl & ~keep) | (cur & keep));
        _s->Sel[(int)SegmentRegister.Cs] = cs;
        _s->Sel[(int)SegmentRegister.Ss] = ss;
        _s->Regs[4] = nrsp;
        SetCpl(cpl);
        _s->Rip = rip;
    }
}
