using System.Runtime.InteropServices;
using Iced.Intel;
using IReg = Iced.Intel.Register;

namespace ToyVmm.Cpu.Ops;

/// <summary>
/// SSE floating point under the guest's MXCSR, computed by the host CPU itself: one small
/// native thunk per instruction form loads the guest's rounding control, FZ and DAZ (every
/// exception masked, flags cleared), runs the instruction on xmm0/xmm1/rax, and hands back
/// the result, the flags it raised and RFLAGS. The handlers (Sse.Fp.cs) call it only off
/// their fast path, which stays managed code for the default MXCSR. Thunks are assembled with
/// Iced at decode time into pages written once and then made read+execute (never both).
/// </summary>
/// <remarks>
/// The I/O block (8 qwords): [0..1] xmm0 in/out, [2..3] xmm1 in, [4] MXCSR in/out,
/// [5] rax in/out, [6] RFLAGS out, [7] the host's MXCSR while the thunk runs.
/// MXCSR is callee-saved in the SysV ABI: the thunk puts the host's back before it returns.
/// </remarks>
internal static unsafe class HostFp
{
    /// <summary>What the thunk runs: xmm0 = op(xmm0, xmm1[, imm]); rax = op(xmm1); xmm0 = op(xmm0, rax or eax); flags = op(xmm0, xmm1).</summary>
    public enum Shape { XmmXmm, GprXmm, XmmGpr, Compare }

    private const int ThunkBytes = 64;

    /// <summary>The mnemonics computed here, and what their thunks look like.</summary>
    private static readonly (Mnemonic M, Shape S)[] Forms =
    [
        .. new[]
        {
            Mnemonic.Addsd, Mnemonic.Subsd, Mnemonic.Mulsd, Mnemonic.Divsd, Mnemonic.Minsd, Mnemonic.Maxsd, Mnemonic.Sqrtsd,
            Mnemonic.Addss, Mnemonic.Subss, Mnemonic.Mulss, Mnemonic.Divss, Mnemonic.Minss, Mnemonic.Maxss, Mnemonic.Sqrtss,
            Mnemonic.Addpd, Mnemonic.Subpd, Mnemonic.Mulpd, Mnemonic.Divpd, Mnemonic.Minpd, Mnemonic.Maxpd, Mnemonic.Sqrtpd,
            Mnemonic.Addps, Mnemonic.Subps, Mnemonic.Mulps, Mnemonic.Divps, Mnemonic.Minps, Mnemonic.Maxps, Mnemonic.Sqrtps,
            Mnemonic.Cmpsd, Mnemonic.Cmpss, Mnemonic.Cmppd, Mnemonic.Cmpps,
            Mnemonic.Cvtsd2ss, Mnemonic.Cvtss2sd, Mnemonic.Cvtdq2ps, Mnemonic.Cvtps2pd, Mnemonic.Cvtpd2ps,
            Mnemonic.Cvtps2dq, Mnemonic.Cvttps2dq, Mnemonic.Cvtpd2dq, Mnemonic.Cvttpd2dq,
            Mnemonic.Rcpps, Mnemonic.Rsqrtps, Mnemonic.Rcpss, Mnemonic.Rsqrtss,
        }.Select(m => (m, Shape.XmmXmm)),
        (Mnemonic.Ucomisd, Shape.Compare), (Mnemonic.Comisd, Shape.Compare), (Mnemonic.Ucomiss, Shape.Compare), (Mnemonic.Comiss, Shape.Compare),
        (Mnemonic.Cvtsd2si, Shape.GprXmm), (Mnemonic.Cvttsd2si, Shape.GprXmm), (Mnemonic.Cvtss2si, Shape.GprXmm), (Mnemonic.Cvttss2si, Shape.GprXmm),
        (Mnemonic.Cvtsi2sd, Shape.XmmGpr), (Mnemonic.Cvtsi2ss, Shape.XmmGpr),
    ];

    private static readonly Dictionary<(Code, int), int> s_index = new();
    private static readonly nint[] s_thunks;

    [DllImport("libc", SetLastError = true)]
    private static extern nint mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [DllImport("libc", SetLastError = true)]
    private static extern int mprotect(nint addr, nuint length, int prot);

    /// <summary>
    /// Every thunk at once, at first use: the legacy SSE encodings of <see cref="Forms"/> (the
    /// compares once per predicate 0-7). Written while the pages are read+write, then made
    /// read+execute for good, so no page is ever writable while a thunk on it can run.
    /// </summary>
    static HostFp()
    {
        var wanted = new List<(Code Code, Shape Shape, int Imm)>();
        var shapes = Forms.ToDictionary(f => f.M, f => f.S);
        foreach (Code c in Enum.GetValues<Code>())
        {
            if (c == Code.INVALID || c.Encoding() != EncodingKind.Legacy || !shapes.TryGetValue(c.Mnemonic(), out var shape)) continue;
            if (c is Code.Cmpsd_m32_m32) continue;   // the string instruction
            bool hasImm = c.Mnemonic() is Mnemonic.Cmpsd or Mnemonic.Cmpss or Mnemonic.Cmppd or Mnemonic.Cmpps;
            if (hasImm) for (int imm = 0; imm < 8; imm++) wanted.Add((c, shape, imm));
            else wanted.Add((c, shape, -1));
        }
        nuint bytes = (nuint)((wanted.Count * ThunkBytes + 4095) & ~4095);
        nint page = mmap(0, bytes, 3, 0x22, -1, 0);   // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
        if (page == -1) throw new InvalidOperationException($"mmap for the host FP thunks failed, errno {Marshal.GetLastPInvokeError()}");
        s_thunks = new nint[wanted.Count];
        for (int i = 0; i < wanted.Count; i++)
        {
            var (code, shape, imm) = wanted[i];
            byte* at = (byte*)page + i * ThunkBytes;
            byte[] b = Assemble(code, shape, imm, (ulong)at);
            if (b.Length > ThunkBytes) throw new InvalidOperationException($"the host FP thunk for {code} is {b.Length} bytes");
            b.CopyTo(new Span<byte>(at, b.Length));
            s_thunks[i] = (nint)at;
            s_index[(code, imm)] = i;
        }
        if (mprotect(page, bytes, 5) != 0)   // PROT_READ|PROT_EXEC
            throw new InvalidOperationException($"mprotect of the host FP thunks failed, errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Index of the thunk for <paramref name="code"/> (a compare: with predicate <paramref name="imm"/> &amp; 7); -1 when there is none.</summary>
    public static int For(Code code, int imm = -1) =>
        s_index.TryGetValue((code, imm < 0 ? -1 : imm & 7), out int i) ? i : -1;

    /// <summary>Runs thunk <paramref name="index"/> on the I/O block <paramref name="io"/>.</summary>
    public static void Run(int index, ulong* io) => ((delegate* unmanaged[SuppressGCTransition]<ulong*, void>)s_thunks[index])(io);

    private static byte[] Assemble(Code code, Shape shape, int imm, ulong ip)
    {
        var a = new Assembler(64);
        var io = IReg.RDI;
        a.AddInstruction(Instruction.Create(Code.Stmxcsr_m32, new MemoryOperand(io, 56)));
        a.AddInstruction(Instruction.Create(Code.Ldmxcsr_m32, new MemoryOperand(io, 32)));
        a.AddInstruction(Instruction.Create(Code.Movdqu_xmm_xmmm128, IReg.XMM0, new MemoryOperand(io, 0L)));
        a.AddInstruction(Instruction.Create(Code.Movdqu_xmm_xmmm128, IReg.XMM1, new MemoryOperand(io, 16)));
        a.AddInstruction(Instruction.Create(Code.Mov_r64_rm64, IReg.RAX, new MemoryOperand(io, 40)));
        a.AddInstruction(shape switch
        {
            Shape.XmmXmm when imm >= 0 => Instruction.Create(code, IReg.XMM0, IReg.XMM1, imm),
            Shape.XmmXmm or Shape.Compare => Instruction.Create(code, IReg.XMM0, IReg.XMM1),
            Shape.GprXmm => Instruction.Create(code, Is64(code) ? IReg.RAX : IReg.EAX, IReg.XMM1),
            _ => Instruction.Create(code, IReg.XMM0, Is64(code) ? IReg.RAX : IReg.EAX),
        });
        a.AddInstruction(Instruction.Create(Code.Pushfq));
        a.AddInstruction(Instruction.Create(Code.Pop_rm64, new MemoryOperand(io, 48)));
        a.AddInstruction(Instruction.Create(Code.Stmxcsr_m32, new MemoryOperand(io, 32)));
        a.AddInstruction(Instruction.Create(Code.Ldmxcsr_m32, new MemoryOperand(io, 56)));
        a.AddInstruction(Instruction.Create(Code.Movdqu_xmmm128_xmm, new MemoryOperand(io, 0L), IReg.XMM0));
        a.AddInstruction(Instruction.Create(Code.Mov_rm64_r64, new MemoryOperand(io, 40), IReg.RAX));
        a.AddInstruction(Instruction.Create(Code.Retnq));
        var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), ip);
        return ms.ToArray();
    }

    private static bool Is64(Code code) => code.ToString() is var n && (n.Contains("_r64") || n.Contains("_rm64"));
}
