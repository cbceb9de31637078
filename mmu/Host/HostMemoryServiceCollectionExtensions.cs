using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;

namespace ToyVmm.Mmu.Host;

/// <summary>Registers the simulated host with the .NET Generic Host.</summary>
public static class HostMemoryServiceCollectionExtensions
{
    /// <summary>
    /// Add a <see cref="HostMemory"/> singleton built from <paramref name="options"/>
    /// (validated when first resolved) and the background reclaimer as a hosted service.
    /// The container disposes the host memory after the hosted services have stopped.
    /// </summary>
    public static IServiceCollection AddToyVmmHostMemory(this IServiceCollection services, HostMemoryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(options);
        services.TryAddSingleton(sp => new HostMemory(sp.GetRequiredService<HostMemoryOptions>()));
        services.AddSingleton<HostReclaimerService>();
        services.AddSingleton<IHostedService>(sp => sp.GetRequiredService<HostReclaimerService>());
        return services;
    }
}
