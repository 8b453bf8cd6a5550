// Package metrics defines mailconf's Prometheus metrics. One Metrics value is
// created per process and handed to every service; nothing is registered in
// the Prometheus default registry.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every metric mailconf exports.
type Metrics struct {
	Registry *prometheus.Registry

	// AutoconfigRequests counts configuration answers by format
	// (thunderbird, autodiscover, autodiscover-json, mobileconfig, setup,
	// settings) and HTTP status.
	AutoconfigRequests *prometheus.CounterVec
	// Connections counts accepted connections by service (smtp, imaps, ...).
	Connections *prometheus.CounterVec
	// Logins counts login attempts by protocol and result (ok, failed).
	Logins *prometheus.CounterVec
	// Messages counts messages by direction (in, out).
	Messages *prometheus.CounterVec
	// QueueSize is the number of messages waiting in the outbound queue.
	QueueSize prometheus.Gauge
	// ProbeResults counts finished probes by overall status.
	ProbeResults *prometheus.CounterVec
}

// New creates the metrics in a fresh registry, with Go and process
// collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		AutoconfigRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailconf_autoconfig_requests_total",
			Help: "Client configuration requests by format and HTTP status.",
		}, []string{"format", "status"}),
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailconf_connections_total",
			Help: "Accepted connections by service.",
		}, []string{"service"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailconf_logins_total",
			Help: "Login attempts by protocol and result.",
		}, []string{"protocol", "result"}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailconf_messages_total",
			Help: "Messages received (in) and relayed (out).",
		}, []string{"direction"}),
		QueueSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailconf_queue_size",
			Help: "Messages waiting in the outbound queue.",
		}),
		ProbeResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailconf_probe_results_total",
			Help: "Finished probes by overall status.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.AutoconfigRequests, m.Connections, m.Logins, m.Messages, m.QueueSize, m.ProbeResults,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
