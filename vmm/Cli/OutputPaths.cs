namespace ToyVmm.Cli;

/// <summary>
/// Checks, before a run, that the files and folders it will write at its end can be
/// written: finding out after minutes of guest time that a report cannot be saved
/// would lose the run.
/// </summary>
public static class OutputPaths
{
    /// <summary>Why a file cannot be written at <paramref name="path"/>, or null when it can. Creates nothing.</summary>
    public static string? CheckFile(string path)
    {
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return $"not a usable path ({ex.Message})";
        }
        if (Directory.Exists(full))
            return "is a folder, not a file";
        string? dir = Path.GetDirectoryName(full);
        if (dir is null || !Directory.Exists(dir))
            return $"the folder {dir ?? full} does not exist";
        if (File.Exists(full))
        {
            // Open without truncating: the old contents stay until the run writes its own.
            try
            {
                using var _ = new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
                return null;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                return $"cannot be written ({ex.Message})";
            }
        }
        return ProbeFolder(dir);
    }

    /// <summary>
    /// Why files cannot be written in folder <paramref name="path"/>, or null when they can.
    /// A missing folder is fine when its nearest existing parent is writable (the folder is
    /// created by <see cref="CreateDirectory"/> once every check has passed); creates nothing.
    /// </summary>
    public static string? CheckDirectory(string path)
    {
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return $"not a usable path ({ex.Message})";
        }
        string? existing = full;
        while (existing != null && !Directory.Exists(existing))
        {
            if (File.Exists(existing))
                return existing == full ? "is a file, not a folder" : $"cannot be created: {existing} is a file";
            existing = Path.GetDirectoryName(existing);
        }
        if (existing is null)
            return "cannot be created: no part of it exists";
        return ProbeFolder(existing);
    }

    /// <summary>Creates folder <paramref name="path"/> when missing; returns why it cannot be, or null.</summary>
    public static string? CreateDirectory(string path)
    {
        try
        {
            Directory.CreateDirectory(path);
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"cannot be created ({ex.Message})";
        }
    }

    /// <summary>Whether two paths name the same file.</summary>
    public static bool Same(string a, string b) =>
        string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

    // Permission bits do not say it all (root, read-only mounts, ACLs): create and delete a file.
    private static string? ProbeFolder(string dir)
    {
        string probe = Path.Combine(dir, $".toyvmm-write-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"the folder {dir} is not writable ({ex.Message})";
        }
    }
}
