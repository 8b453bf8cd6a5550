// Package autoconfigtest builds what the format packages' tests share: a
// Service for a config given as TOML text. Each test keeps its own config,
// because its golden files depend on the exact hosts and ports in it.
package autoconfigtest

import (
	"testing"

	"mailconf/autoconfig"
	"mailconf/config"
	"mailconf/internal/metrics"
)

// Service parses toml as a config file and returns a Service over its
// catalog, with fresh metrics (read them through Service.Metrics) and a
// logger that discards. A bad config fails t.
func Service(t testing.TB, toml string) *autoconfig.Service {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	svc, err := autoconfig.NewService(autoconfig.NewCatalog(cfg), metrics.New(), nil)
	if err != nil {
		t.Fatalf("autoconfig.NewService: %v", err)
	}
	return svc
}
