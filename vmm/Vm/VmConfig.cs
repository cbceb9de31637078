namespace ToyVmm.Vm;

/// <summary>What one VM is made of. Checked by <see cref="BootLayout.Create"/> when the VM is built.</summary>
/// <param name="RamBytes">Guest RAM, guest-physical [0, RamBytes).</param>
/// <param name="VcpuCount">vCPUs, each on its own thread.</param>
/// <param name="InstructionLimit">Per-vCPU instruction budget; reaching it ends the VM with <see cref="VmOutcome.InstructionLimit"/>.</param>
/// <param name="TierThreshold">The translation tier (<see cref="ToyVmm.Cpu.Vcpu.TierThreshold"/>): -1 interprets only.</param>
/// <param name="VcpuNice">Linux nice value of the vCPU threads (1..19, lower scheduling weight than the VMM's other
/// threads, so that an invalidator competing with them for the cores gets one sooner); 0 leaves them as they are.</param>
/// <param name="PinVcpus">Pin each vCPU thread to one CPU of the process's allowed set, round-robin by vCPU index
/// (<see cref="VcpuThreadAffinity"/>), so that TLB shootdowns order a vCPU with a barrier aimed at its CPU alone. Where the
/// affinity cannot be set the vCPU runs unpinned (reported once) with the process-wide barrier.</param>
public sealed record VmConfig(ulong RamBytes, int VcpuCount, long InstructionLimit = long.MaxValue, int TierThreshold = -1, int VcpuNice = 0,
    bool PinVcpus = false);
