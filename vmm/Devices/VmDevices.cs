using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Devices;

/// <summary>
/// The devices and hypercalls of GUEST-ABI.md, as seen by every vCPU of one VM:
/// the debug console (0xE9), the exit port (0xF4), PAGEOUT and DISCARD.
/// </summary>
public sealed class VmDevices : IVmExitHandler
{
    public const ushort ConsolePort = 0xE9;
    public const ushort ExitPort = 0xF4;
    public const ulong HypercallPageOut = 0x100;
    public const ulong HypercallDiscard = 0x101;
    /// <summary>-KVM_ENOSYS, the answer to an unknown hypercall.</summary>
    public const long UnknownHypercallResult = -1000;
    /// <summary>The answer to a bad range (GUEST-ABI.md): the one rule and value of <see cref="GuestRange"/>.</summary>
    public const long BadRangeResult = GuestRange.Invalid;

    private readonly IGuestMemoryManagement _memory;
    private readonly Action<int, int> _exitRequested;

    /// <param name="memory">The management side of guest memory, which the hypercalls act on.</param>
    /// <param name="console">Where port 0xE9 writes.</param>
    /// <param name="exitRequested">Called with (vCPU index, status) when the guest writes the exit port; must stop every vCPU.</param>
    public VmDevices(IGuestMemoryManagement memory, GuestConsole console, Action<int, int> exitRequested)
    {
        _memory = memory;
        Console = console;
        _exitRequested = exitRequested;
    }

    public GuestConsole Console { get; }
    public PortCounters Counters { get; } = new();

    public void PortOut(Vcpu vcpu, ushort port, int size, uint value)
    {
        switch (port)
        {
            case ConsolePort when size == 1:
                Console.Write((byte)value);
                break;
            case ExitPort:
                _exitRequested(vcpu.Index, (int)(value & 0xFF));
                break;
            default:
                Counters.CountUnknownOut();
                break;
        }
    }

    public uint PortIn(Vcpu vcpu, ushort port, int size)
    {
        Counters.CountUnknownIn();
        return uint.MaxValue;
    }

    public void Hypercall(Vcpu vcpu)
    {
        Counters.CountHypercall();
        ulong number = vcpu.GetGpr(Gpr.Rax);
        long result = number switch
        {
            // RBX start, RCX bytes; the range is checked once, by the management side.
            HypercallPageOut => _memory.PageOut(new Gpa(vcpu.GetGpr(Gpr.Rbx)), vcpu.GetGpr(Gpr.Rcx)),
            HypercallDiscard => _memory.Discard(new Gpa(vcpu.GetGpr(Gpr.Rbx)), vcpu.GetGpr(Gpr.Rcx)),
            _ => Unknown(),
        };
        vcpu.SetGpr(Gpr.Rax, unchecked((ulong)result));
    }

    private long Unknown()
    {
        Counters.CountUnknownHypercall();
        return UnknownHypercallResult;
    }
}
