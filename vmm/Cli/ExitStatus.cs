namespace ToyVmm.Cli;

/// <summary>The process exit status, set once by <see cref="VmRunner"/> and read after the host stops.</summary>
public sealed class ExitStatus
{
    private int _value = ExitCodes.InternalError;

    public int Value
    {
        get => Volatile.Read(ref _value);
        set => Volatile.Write(ref _value, value);
    }
}
