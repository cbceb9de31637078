using ToyVmm.Cpu;
using ToyVmm.Mmu;
using ToyVmm.Mmu.Grants;
using ToyVmm.Mmu.Metrics;
using ToyVmm.Mmu.Secondary;

namespace ToyVmm.Devices;

/// <summary>
/// The devices and hypercalls of GUEST-ABI.md, as seen by every vCPU of one VM:
/// the debug console (0xE9), the exit port (0xF4), PAGEOUT, DISCARD and PHASE.
/// </summary>
public sealed class VmDevices : IVmExitHandler
{
    public const ushort ConsolePort = 0xE9;
    public const ushort ExitPort = 0xF4;
    public const ulong HypercallPageOut = 0x100;
    public const ulong HypercallDiscard = 0x101;
    public const ulong HypercallPhase = 0x110;
    public const ulong HypercallGrantMake = 0x102;
    public const ulong HypercallGrantAttach = 0x103;
    public const ulong HypercallGrantDetach = 0x104;
    public const ulong HypercallGrantRemove = 0x105;
    /// <summary>-KVM_ENOSYS, the answer to an unknown hypercall.</summary>
    public const long UnknownHypercallResult = -1000;
    /// <summary>-EINVAL (<see cref="GuestRange.Invalid"/>, the one value of the range rule): the answer to a bad range or a bad phase name.</summary>
    public const long BadRangeResult = GuestRange.Invalid;
    /// <summary>The VMM's reserved top of guest RAM (GUEST-ABI.md "Memory map"; BootLayout places its tables there).</summary>
    public const ulong ReservedTopBytes = 0x100000;
    /// <summary>-ENOMEM, the answer to a new phase name beyond <see cref="MeasurementHub.MaxPhases"/>.</summary>
    public const long TooManyPhasesResult = -12;

    private readonly IGuestMemory _access;
    private readonly IGuestMemoryManagement _memory;
    private readonly Action<int, int> _exitRequested;
    private readonly MeasurementHub? _measurements;
    private readonly GrantVm? _grants;

    /// <param name="access">The access side of guest memory, through which PHASE reads its name.</param>
    /// <param name="memory">The management side of guest memory, which PAGEOUT and DISCARD act on.</param>
    /// <param name="console">Where port 0xE9 writes.</param>
    /// <param name="exitRequested">Called with (vCPU index, status) when the guest writes the exit port; must stop every vCPU.</param>
    /// <param name="measurements">Where PHASE switches the phase; null when nothing is measured (PHASE still checks its name).</param>
    /// <param name="grants">Where the grant hypercalls (0x102-0x105) go; null without a host (flat memory): they answer -1000 there.</param>
    public VmDevices(IGuestMemory access, IGuestMemoryManagement memory, GuestConsole console, Action<int, int> exitRequested, MeasurementHub? measurements = null,
        GrantVm? grants = null)
    {
        _grants = grants;
        _access = access;
        _memory = memory;
        Console = console;
        _exitRequested = exitRequested;
        _measurements = measurements;
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
            HypercallPhase => Phase(vcpu),
            // GUEST-ABI 1.1 grants: RBX, RCX, RDX as the ABI's table gives them.
            HypercallGrantMake when _grants is not null => _grants.Make(new Gpa(vcpu.GetGpr(Gpr.Rbx)), vcpu.GetGpr(Gpr.Rcx), vcpu.GetGpr(Gpr.Rdx)),
            HypercallGrantAttach when _grants is not null => _grants.Attach(vcpu.GetGpr(Gpr.Rbx), vcpu.GetGpr(Gpr.Rcx), new Gpa(vcpu.GetGpr(Gpr.Rdx))),
            HypercallGrantDetach when _grants is not null => _grants.Detach(new Gpa(vcpu.GetGpr(Gpr.Rbx)), vcpu.GetGpr(Gpr.Rcx)),
            HypercallGrantRemove when _grants is not null => _grants.Remove(vcpu.GetGpr(Gpr.Rbx)),
            _ => Unknown(),
        };
        vcpu.SetGpr(Gpr.Rax, unchecked((ulong)result));
    }

    private long Unknown()
    {
        Counters.CountUnknownHypercall();
        return UnknownHypercallResult;
    }

    /// <summary>
    /// PHASE (GUEST-ABI 1.1): RBX = guest-physical address of a NUL-terminated name of
    /// 1 to 63 printable ASCII characters, wholly inside the guest's own part of RAM
    /// (below the VMM's reserved top 1 MiB). 0, or -22 for a bad name.
    /// </summary>
    private long Phase(Vcpu vcpu)
    {
        ulong ram = _memory.RamBytes;
        ulong own = ram > ReservedTopBytes ? ram - ReservedTopBytes : 0;
        var name = GuestNameReader.TryRead(_access, vcpu.GetGpr(Gpr.Rbx), own);
        if (name is null) return BadRangeResult;
        if (_measurements is not null && !_measurements.SwitchPhase(name)) return TooManyPhasesResult;
        return 0;
    }
}
