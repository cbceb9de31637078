using Iced.Intel;

namespace ToyVmm.Cpu;

/// <summary>
/// Which instructions touch no guest memory ("quiet"): no explicit or implicit
/// memory operand (stack, strings, descriptor tables), no control transfer
/// through memory or an exception, no I/O, hypercall or system register. A
/// vCPU executing a quiet instruction holds no host pointer, so an invalidator
/// may shoot its TLB down from outside (TlbShootdown.cs). Conservative: anything
/// unsure is not quiet, and only costs the invalidator a wait.
/// </summary>
internal sealed class QuietOps
{
    private readonly InstructionInfoFactory _info = new();

    public bool IsQuiet(in Instruction ins)
    {
        switch (ins.FlowControl)
        {
            case FlowControl.Next:
            case FlowControl.UnconditionalBranch:
            case FlowControl.ConditionalBranch:
            case FlowControl.IndirectBranch:
                break;
            default:
                return false;
        }
        switch (ins.Mnemonic)
        {
            case Mnemonic.In: case Mnemonic.Out: case Mnemonic.Insb: case Mnemonic.Insw: case Mnemonic.Insd:
            case Mnemonic.Outsb: case Mnemonic.Outsw: case Mnemonic.Outsd:
            case Mnemonic.Vmcall: case Mnemonic.Vmmcall: case Mnemonic.Hlt:
            case Mnemonic.Rdmsr: case Mnemonic.Wrmsr: case Mnemonic.Swapgs:
            case Mnemonic.Syscall: case Mnemonic.Sysret: case Mnemonic.Sysenter: case Mnemonic.Sysexit:
            case Mnemonic.Invlpg: case Mnemonic.Wbinvd: case Mnemonic.Invd: case Mnemonic.Lmsw: case Mnemonic.Clts:
            case Mnemonic.Ltr: case Mnemonic.Lldt: case Mnemonic.Monitor: case Mnemonic.Mwait: case Mnemonic.Xsetbv:
                return false;
        }
        for (int i = 0; i < ins.OpCount; i++)
        {
            var kind = ins.GetOpKind(i);
            if (kind != OpKind.Register) continue;
            var r = ins.GetOpRegister(i);
            if (r.IsCR() || r.IsDR() || r.IsTR()) return false;
        }
        foreach (var m in _info.GetInfo(ins).GetUsedMemory())
            if (m.Access != OpAccess.NoMemAccess) return false;   // lea computes an address and reads nothing
        return true;
    }
}
