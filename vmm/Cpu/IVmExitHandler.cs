namespace ToyVmm.Cpu;

/// <summary>
/// What a vCPU exits to (the VM's device model): port I/O and hypercalls. Called
/// on the vCPU's own thread, outside guest mode (the call may block).
/// </summary>
public interface IVmExitHandler
{
    /// <summary><c>out</c>: <paramref name="size"/> is 1, 2 or 4 bytes.</summary>
    void PortOut(Vcpu vcpu, ushort port, int size, uint value);

    /// <summary><c>in</c>: returns the value (the low <paramref name="size"/> bytes are used).</summary>
    uint PortIn(Vcpu vcpu, ushort port, int size);

    /// <summary><c>vmcall</c>: reads its arguments from and writes its result to the vCPU's registers.</summary>
    void Hypercall(Vcpu vcpu);
}

/// <summary>Why <see cref="Vcpu.Run"/> returned.</summary>
public enum VcpuExitKind
{
    /// <summary><c>hlt</c> with interrupts off: the vCPU stops for good (GUEST-ABI.md).</summary>
    Halted,
    /// <summary>The instruction budget given to Run was used up.</summary>
    InstructionLimit,
    /// <summary>Someone called <c>VcpuLink.RequestStop</c> (the exit port, the VM stopping).</summary>
    StopRequested,
    /// <summary>The VM cannot go on: an exception with no IDT, a triple fault, an unbacked access, an opcode the interpreter cannot execute.</summary>
    VmError,
    /// <summary>The host could not back guest memory (no frame to reclaim, a swap I/O error): not the guest's fault.</summary>
    HostFailure,
    /// <summary>
    /// The interpreter or a device threw an exception it should not have: a bug of the
    /// VMM, not the guest's doing. The VM ends as an internal error (exit status 1).
    /// </summary>
    InternalError,
}

/// <summary>The result of <see cref="Vcpu.Run"/>; <see cref="Message"/> is one clear line for VmError.</summary>
public readonly record struct VcpuExit(VcpuExitKind Kind, string? Message = null);

/// <summary>General-purpose registers in encoding order.</summary>
public enum Gpr
{
    Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi,
    R8, R9, R10, R11, R12, R13, R14, R15,
}
