using System.Runtime.InteropServices;
using Iced.Intel;

namespace ToyVmm.Tests.Cpu.Differential;

/// <summary>
/// Runs a snippet on the host CPU. One process-wide instance owns one RWX block;
/// callers hold <see cref="Gate"/> from <see cref="Load"/> through their last
/// <see cref="Run"/> of that snippet.
/// </summary>
/// <remarks>
/// The thunk written before and after the snippet:
/// <code>
///   push rbx, rbp, r12-r15; pushfq              ; what the host ABI needs back
///   mov rax, &amp;state; mov [rax+HostRsp], rsp
///   fxsave64 [rax+HostFx]; stmxcsr [rax+HostMxcsr]; fxrstor64 [rax+GuestFx]  ; the x87/MMX registers, FCW, FSW, FTW
///   movdqu xmm0-15, [rax+Xmm]
///   push [rax+Rflags]; popfq                    ; only CF PF AF ZF SF DF OF are ever set
///   mov rsp, [rax+Rsp]; mov rcx..r15, [rax+...]; mov rax, [rax]
/// snippet:
///   ...
/// epilogue:                                     ; the guest copy has hlt here
///   mov [&amp;state.Tmp], rax (moffs64); mov rax, &amp;state
///   mov [rax+...], rcx..r15 (rsp too); mov rsp, [rax+HostRsp]
///   pushfq; pop rcx; mov [rax+Rflags], rcx; mov rcx, [rax+Tmp]; mov [rax], rcx
///   movdqu [rax+Xmm], xmm0-15; fxsave64 [rax+GuestFx]; fxrstor64 [rax+HostFx]   ; the host's x87 state back (empty stack, its FCW)
///   popfq; pop r15..rbx; ret
/// </code>
/// Nothing between the snippet's last instruction and <c>pushfq</c> writes flags.
/// </remarks>
public sealed unsafe class NativeRunner : IDisposable
{
    private const int RflagsOffset = 128, HostRspOffset = 136, TmpOffset = 144, MxcsrOffset = 152, HostMxcsrOffset = 156, XmmOffset = 160,
        FaultOffset = XmmOffset + 256, OldHandlersOffset = FaultOffset + 64, GuestFxOffset = OldHandlersOffset + 8 * 32 + 32,
        HostFxOffset = GuestFxOffset + 512, StateSize = HostFxOffset + 512;
    /// <summary>Where the fault handler and its recovery stub live in the code page (the thunk must end before).</summary>
    private const int HandlerOffset = 0x1800;

    private static readonly Lazy<NativeRunner> s_instance = new(() => new NativeRunner());

    /// <summary>The process-wide runner.</summary>
    public static NativeRunner Instance => s_instance.Value;

    /// <summary>Held by whoever has a snippet loaded and is running it.</summary>
    public Lock Gate { get; } = new();

    private readonly ExecutableRegion _region = new();
    private byte* _state; // NativeMemory block of StateSize bytes, never moved
    private LoadedSnippet? _loaded;

    private NativeRunner()
    {
        _state = (byte*)NativeMemory.AlignedAlloc(StateSize, 64);
        NativeMemory.Clear(_state, StateSize);
    }

    public ulong RegionBase => _region.Base;

    /// <summary>True when the native block lies below 4 GiB, so 32-bit addressing (0x67) reaches it.</summary>
    public bool RegionBelow4G => _region.Below4G;

    /// <summary>Assembles <paramref name="emitSnippet"/> between the fixed prologue and epilogue and writes it to the code page.</summary>
    public LoadedSnippet Load(Action<Assembler> emitSnippet)
    {
        if (!Gate.IsHeldByCurrentThread) throw new InvalidOperationException("hold NativeRunner.Gate while loading and running");
        ulong codeBase = _region.Base + RegionLayout.CodeOffset;
        _prologue ??= Assemble(EmitPrologue, codeBase);
        _epilogue ??= Assemble(EmitEpilogue, codeBase);
        ulong snippetStart = codeBase + (ulong)_prologue.Length;
        byte[] snippet = Assemble(emitSnippet, snippetStart);
        ulong snippetEnd = snippetStart + (ulong)snippet.Length;
        int total = _prologue.Length + snippet.Length + _epilogue.Length;
        if (total > HandlerOffset)
            throw new InvalidOperationException($"thunk of {total} bytes does not fit the code page");

        var page = _region.Bytes(RegionLayout.CodeOffset, RegionLayout.CodeSize);
        page.Fill(0xCC);
        _prologue.CopyTo(page);
        snippet.CopyTo(page[_prologue.Length..]);
        _epilogue.CopyTo(page[(_prologue.Length + snippet.Length)..]);
        var guestPage = page.ToArray();
        (_handler ??= Assemble(EmitFaultHandler, codeBase + HandlerOffset)).CopyTo(page[HandlerOffset..]);
        guestPage[(int)(snippetEnd - codeBase)] = 0xF4; // hlt where the native epilogue starts
        _loaded = new LoadedSnippet(codeBase, guestPage, snippetStart, snippetEnd, Disassemble(snippet, snippetStart));
        return _loaded;
    }

    private byte[]? _prologue, _epilogue, _handler; // position-independent: no RIP-relative operand, absolute state address

    private static byte[] Assemble(Action<Assembler> emit, ulong ip)
    {
        var a = new Assembler(64);
        emit(a);
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), ip);
        return ms.ToArray();
    }

    private void EmitPrologue(Assembler a)
    {
        ulong state = (ulong)_state;
        foreach (var r in CalleeSaved) a.AddInstruction(Instruction.Create(Code.Push_r64, r));
        a.AddInstruction(Instruction.Create(Code.Pushfq));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.RAX, state));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RAX, HostRspOffset), Register.RSP));
        a.AddInstruction(Instruction.Create(Code.Fxsave64_m512byte, new MemoryOperand(Register.RAX, HostFxOffset)));
        a.AddInstruction(Instruction.Create(Code.Stmxcsr_m32, new MemoryOperand(Register.RAX, HostMxcsrOffset)));   // before fxrstor loads the case's
        a.AddInstruction(Instruction.Create(Code.Fxrstor64_m512byte, new MemoryOperand(Register.RAX, GuestFxOffset)));
        for (int i = 0; i < 16; i++)
            a.AddInstruction(Instruction.Create(Code.Movdqu_xmm_xmmm128, Register.XMM0 + i, new MemoryOperand(Register.RAX, XmmOffset + 16 * i)));
        a.AddInstruction(Instruction.Create(Code.Ldmxcsr_m32, new MemoryOperand(Register.RAX, MxcsrOffset)));
        a.AddInstruction(Instruction.Create(Code.Push_rm64, new MemoryOperand(Register.RAX, RflagsOffset)));
        a.AddInstruction(Instruction.Create(Code.Popfq));
        for (int i = 1; i < 16; i++)
            a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX + i, new MemoryOperand(Register.RAX, 8 * i)));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, new MemoryOperand(Register.RAX)));
    }

    private void EmitEpilogue(Assembler a)
    {
        ulong state = (ulong)_state;
        a.db(0x48, 0xA3); // mov [moffs64], rax
        a.dq(state + TmpOffset);
        a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.RAX, state));
        for (int i = 1; i < 16; i++)
            a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RAX, 8 * i), Register.RAX + i));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RSP, new MemoryOperand(Register.RAX, HostRspOffset)));
        a.AddInstruction(Instruction.Create(Code.Pushfq));
        a.AddInstruction(Instruction.Create(Code.Pop_r64, Register.RCX));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RAX, RflagsOffset), Register.RCX));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RCX, new MemoryOperand(Register.RAX, TmpOffset)));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RAX), Register.RCX));
        for (int i = 0; i < 16; i++)
            a.AddInstruction(Instruction.Create(Code.Movdqu_xmmm128_xmm, new MemoryOperand(Register.RAX, XmmOffset + 16 * i), Register.XMM0 + i));
        a.AddInstruction(Instruction.Create(Code.Stmxcsr_m32, new MemoryOperand(Register.RAX, MxcsrOffset)));
        a.AddInstruction(Instruction.Create(Code.Fxsave64_m512byte, new MemoryOperand(Register.RAX, GuestFxOffset)));
        a.AddInstruction(Instruction.Create(Code.Fxrstor64_m512byte, new MemoryOperand(Register.RAX, HostFxOffset)));   // FCW callee-saved, x87 stack empty
        a.AddInstruction(Instruction.Create(Code.Ldmxcsr_m32, new MemoryOperand(Register.RAX, HostMxcsrOffset)));   // callee-saved
        a.AddInstruction(Instruction.Create(Code.Popfq));
        for (int i = CalleeSaved.Length - 1; i >= 0; i--) a.AddInstruction(Instruction.Create(Code.Pop_r64, CalleeSaved[i]));
        a.AddInstruction(Instruction.Create(Code.Retnq));
    }

    // ---- Faults: a signal handler (SIGSEGV, SIGBUS, SIGILL, SIGFPE) installed only around one run.
    // A fault inside the code page records signal, RIP, error code and trap number from the
    // ucontext and resumes at a stub that unwinds to the host as the epilogue does; any other
    // fault (another thread's, e.g. the runtime's own null checks) goes on to the handler that was
    // installed before, with the same arguments.

    private void EmitFaultHandler(Assembler a)
    {
        ulong state = (ulong)_state;
        ulong codeStart = _region.Base + RegionLayout.CodeOffset, codeEnd = codeStart + HandlerOffset;
        const int Gregs = 40, RegRip = 16, RegErr = 19, RegTrapno = 20;
        var chain = a.CreateLabel();
        var recovery = a.CreateLabel();
        // rdi = signal, rsi = siginfo, rdx = ucontext
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, new MemoryOperand(Register.RDX, Gregs + 8 * RegRip)));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.RCX, codeStart));
        a.AddInstruction(Instruction.Create(Code.Cmp_r64_rm64, Register.RAX, Register.RCX));
        a.AddInstruction(Instruction.CreateBranch(Code.Jb_rel32_64, chain.Id));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.RCX, codeEnd));
        a.AddInstruction(Instruction.Create(Code.Cmp_r64_rm64, Register.RAX, Register.RCX));
        a.AddInstruction(Instruction.CreateBranch(Code.Jae_rel32_64, chain.Id));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.RCX, state + FaultOffset));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RCX, 0L), Register.RDI));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RCX, 8), Register.RAX));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, new MemoryOperand(Register.RDX, Gregs + 8 * RegErr)));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RCX, 16), Register.RAX));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RAX, new MemoryOperand(Register.RDX, Gregs + 8 * RegTrapno)));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RCX, 24), Register.RAX));
        a.lea(AssemblerRegisters.rax, AssemblerRegisters.__[recovery]);
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(Register.RDX, Gregs + 8 * RegRip), Register.RAX));
        a.AddInstruction(Instruction.Create(Code.Retnq));
        a.Label(ref chain);
        a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.RAX, state + OldHandlersOffset));
        a.AddInstruction(Instruction.Create(Code.Jmp_rm64, new MemoryOperand(Register.RAX, Register.RDI, 8)));
        // Back on the host's stack as the epilogue leaves it: x87 state, MXCSR and RFLAGS, the callee-saved registers.
        a.Label(ref recovery);
        a.AddInstruction(Instruction.Create(Code.Mov_r64_imm64, Register.RAX, state));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, Register.RSP, new MemoryOperand(Register.RAX, HostRspOffset)));
        a.AddInstruction(Instruction.Create(Code.Fxrstor64_m512byte, new MemoryOperand(Register.RAX, HostFxOffset)));
        a.AddInstruction(Instruction.Create(Code.Ldmxcsr_m32, new MemoryOperand(Register.RAX, HostMxcsrOffset)));
        a.AddInstruction(Instruction.Create(Code.Popfq));
        for (int i = CalleeSaved.Length - 1; i >= 0; i--) a.AddInstruction(Instruction.Create(Code.Pop_r64, CalleeSaved[i]));
        a.AddInstruction(Instruction.Create(Code.Retnq));
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int sigaction(int sig, byte* act, byte* old);

    private static readonly int[] FaultSignals = [4, 7, 8, 11];   // SIGILL, SIGBUS, SIGFPE, SIGSEGV

    /// <summary>
    /// Runs the loaded snippet natively with a fault handler in place: null when it faulted, with
    /// <paramref name="fault"/> saying how (the kernel's signal, trap number and error code, and the
    /// faulting RIP); otherwise the state it leaves, as <see cref="Run"/>.
    /// </summary>
    public MachineState? RunCatchingFault(MachineState input, out NativeFault? fault)
    {
        if (!Gate.IsHeldByCurrentThread) throw new InvalidOperationException("hold NativeRunner.Gate while loading and running");
        ulong* report = (ulong*)(_state + FaultOffset);
        ulong* old = (ulong*)(_state + OldHandlersOffset);
        report[0] = 0;
        const int ActSize = 152;   // glibc x86-64 struct sigaction: handler, mask[128], flags, restorer
        byte* act = stackalloc byte[ActSize];
        byte* saved = stackalloc byte[ActSize * 4];
        new Span<byte>(act, ActSize).Clear();
        *(ulong*)act = _region.Base + RegionLayout.CodeOffset + HandlerOffset;
        *(int*)(act + 136) = 0x4 | 0x0800_0000 | 0x4000_0000;   // SA_SIGINFO | SA_ONSTACK | SA_NODEFER: faults repeat per case
        for (int i = 0; i < FaultSignals.Length; i++)
        {
            if (sigaction(FaultSignals[i], act, saved + i * ActSize) != 0)
                throw new InvalidOperationException($"sigaction({FaultSignals[i]}) failed, errno {Marshal.GetLastPInvokeError()}");
            ulong prev = *(ulong*)(saved + i * ActSize);
            if (prev <= 1) throw new InvalidOperationException($"signal {FaultSignals[i]} had no handler to chain to");
            old[FaultSignals[i]] = prev;
        }
        MachineState output;
        try { output = Run(input); }
        finally
        {
            for (int i = 0; i < FaultSignals.Length; i++) sigaction(FaultSignals[i], saved + i * ActSize, null);
        }
        if (report[0] == 0) { fault = null; return output; }
        fault = new NativeFault((int)report[0], (int)report[3], report[2], report[1]);
        return null;
    }

    /// <summary>Runs the loaded snippet natively from <paramref name="input"/> and returns the state it leaves.</summary>
    public MachineState Run(MachineState input)
    {
        if (!Gate.IsHeldByCurrentThread) throw new InvalidOperationException("hold NativeRunner.Gate while loading and running");
        if (_loaded is null) throw new InvalidOperationException("load a snippet first");
        if ((input.Rflags & ~MachineState.InputFlags) != 0)
            throw new ArgumentException($"input RFLAGS {input.Rflags:x} sets bits outside CF PF AF ZF SF DF OF", nameof(input));
        ulong* gpr = (ulong*)_state;
        for (int i = 0; i < 16; i++) gpr[i] = input.Gpr[i];
        *(ulong*)(_state + RflagsOffset) = input.Rflags | 2;
        if ((input.Mxcsr & 0xFFFF_1F80) != 0x1F80)
            throw new ArgumentException($"input MXCSR {input.Mxcsr:x} unmasks an exception or sets reserved bits", nameof(input));
        *(uint*)(_state + MxcsrOffset) = input.Mxcsr;
        for (int i = 0; i < 16; i++) *(UInt128*)(_state + XmmOffset + 16 * i) = input.Xmm[i];
        byte* fx = _state + GuestFxOffset;
        NativeMemory.Clear(fx, 512);
        *(ushort*)fx = input.Fcw;
        *(ushort*)(fx + 2) = input.Fsw;
        fx[4] = input.Ftw;
        *(uint*)(fx + 24) = input.Mxcsr;   // fxrstor checks it; the ldmxcsr after it sets it anyway
        for (int i = 0; i < 8; i++)
        {
            *(ulong*)(fx + 32 + 16 * i) = (ulong)input.St[i];
            *(ushort*)(fx + 40 + 16 * i) = (ushort)(input.St[i] >> 64);
        }
        input.Scratch.CopyTo(_region.Bytes(RegionLayout.ScratchOffset, RegionLayout.ScratchSize));
        input.StackWindow.CopyTo(_region.Bytes(RegionLayout.StackWindowOffset, RegionLayout.StackWindowSize));

        // SAFETY: the code page holds the thunk assembled by Load for this address; the
        // thunk restores every register the unmanaged calling convention preserves.
        ((delegate* unmanaged<void>)(_loaded.CodeBase))();

        var output = new MachineState();
        for (int i = 0; i < 16; i++) output.Gpr[i] = gpr[i];
        output.Rflags = *(ulong*)(_state + RflagsOffset) & (MachineState.InputFlags | 2); // IF and the rest are the host's
        output.Mxcsr = *(uint*)(_state + MxcsrOffset);
        for (int i = 0; i < 16; i++) output.Xmm[i] = *(UInt128*)(_state + XmmOffset + 16 * i);
        output.Fcw = *(ushort*)fx;
        output.Fsw = *(ushort*)(fx + 2);
        output.Ftw = fx[4];
        for (int i = 0; i < 8; i++)
            output.St[i] = new UInt128(*(ushort*)(fx + 40 + 16 * i), *(ulong*)(fx + 32 + 16 * i));
        _region.Bytes(RegionLayout.ScratchOffset, RegionLayout.ScratchSize).CopyTo(output.Scratch);
        _region.Bytes(RegionLayout.StackWindowOffset, RegionLayout.StackWindowSize).CopyTo(output.StackWindow);
        return output;
    }

    private static readonly Register[] CalleeSaved =
        [Register.RBX, Register.RBP, Register.R12, Register.R13, Register.R14, Register.R15];

    /// <summary>The snippet as text, one instruction per "; "-separated item (NASM syntax).</summary>
    public static string Disassemble(byte[] bytes, ulong ip)
    {
        var decoder = Decoder.Create(64, bytes, ip);
        var formatter = new NasmFormatter();
        formatter.Options.HexPrefix = "0x";
        formatter.Options.HexSuffix = null;
        var output = new StringOutput();
        var parts = new List<string>();
        ulong endIp = ip + (ulong)bytes.Length;
        while (decoder.IP < endIp)
        {
            decoder.Decode(out var instr);
            formatter.Format(instr, output);
            parts.Add(output.ToStringAndReset());
        }
        return string.Join("; ", parts);
    }

    public void Dispose()
    {
        _region.Dispose();
        if (_state != null)
        {
            NativeMemory.AlignedFree(_state);
            _state = null;
        }
    }
}

/// <summary>A fault the host CPU took: the signal, the trap number (vector) and error code the kernel reported, and RIP.</summary>
public sealed record NativeFault(int Signal, int Vector, ulong ErrorCode, ulong Rip);

/// <summary>A snippet as loaded: the code page bytes the guest gets (with hlt at the epilogue) and where the snippet is.</summary>
public sealed record LoadedSnippet(ulong CodeBase, byte[] GuestCodePage, ulong SnippetStart, ulong SnippetEnd, string Text);
