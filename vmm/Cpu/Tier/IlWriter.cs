using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.InteropServices;
using System.Text;

namespace ToyVmm.Cpu.Tier;

/// <summary>
/// The <see cref="ILGenerator"/> calls the compiler makes, forwarded, and written down as text
/// when a listing is asked for (<see cref="BlockCompiler.Listing"/>, used by the README example
/// and by tests that look at what was emitted).
/// </summary>
internal sealed class IlWriter(ILGenerator il, StringBuilder? listing)
{
    private readonly Dictionary<Label, int> _labels = new();

    private void Line(string text) => listing?.Append("  ").AppendLine(text);

    private string Name(Label l)
    {
        if (!_labels.TryGetValue(l, out int n)) _labels[l] = n = _labels.Count;
        return $"L{n}";
    }

    public LocalBuilder DeclareLocal(Type t) => il.DeclareLocal(t);
    public Label DefineLabel() => il.DefineLabel();
    public void MarkLabel(Label l) { il.MarkLabel(l); listing?.AppendLine($"{Name(l)}:"); }
    public void Emit(OpCode op) { il.Emit(op); Line(op.Name!); }
    public void Emit(OpCode op, int v) { il.Emit(op, v); Line($"{op.Name} {v}"); }
    public void Emit(OpCode op, long v) { il.Emit(op, v); Line($"{op.Name} 0x{v:x}"); }
    public void Emit(OpCode op, LocalBuilder l) { il.Emit(op, l); Line($"{op.Name} V{l.LocalIndex}"); }
    public void Emit(OpCode op, Label l) { il.Emit(op, l); Line($"{op.Name} {Name(l)}"); }
    public void Emit(OpCode op, Type t) { il.Emit(op, t); Line($"{op.Name} {t.Name}"); }
    public void Emit(OpCode op, MethodInfo m) { il.Emit(op, m); Line($"{op.Name} {m.DeclaringType?.Name}.{m.Name}"); }

    public void EmitSwitch(Label[] targets) { il.Emit(OpCodes.Switch, targets); Line($"switch ({string.Join(", ", targets.Select(Name))})"); }

    public void EmitCalli(OpCode op, CallingConventions cc, Type ret, Type[] args, Type[]? optional)
    {
        il.EmitCalli(op, cc, ret, args, optional);
        Line($"{op.Name} {ret.Name}({string.Join(", ", args.Select(a => a.Name))})");
    }
}
