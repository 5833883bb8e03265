// Command otelcol-nons is the OpenTelemetry Collector distribution that NoN's tests run: exactly the components
// that otel/collector.yaml uses, at one collector release (core v0.165.0, contrib v0.165.1).
//
// It is what the collector's builder (ocb) would generate from a manifest listing these components; it is kept
// by hand because it is two short files and one go.mod, and the builder itself would be one more binary to fetch.
// scripts/stack-binaries builds it.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// version is the collector core release this distribution is built from; scripts/stack-binaries checks that it
// matches go.mod and the compose image tag.
const version = "0.165.0"

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-nons",
			Description: "OpenTelemetry Collector for the NoN observability stack",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				// file: for --config, env: for the ${env:VAR:-default} host names and ports in collector.yaml.
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatal(err)
	}
}
