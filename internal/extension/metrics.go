package extension

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// Metrics on the manager's /metrics endpoint. Registered once per process
// (tests run several managers; they share the counters).
var (
	jobsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arca_extension_jobs_total", Help: "Jobs that reached a terminal phase, by kind (backup, restore) and phase.",
	}, []string{"kind", "phase"})
	jobDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "arca_extension_job_duration_seconds", Help: "Time from start to end of finished jobs, by kind.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 s … 2.3 h
	}, []string{"kind"})
	jobItems = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arca_extension_job_items_total", Help: "Objects backed up or restored by finished jobs, by kind.",
	}, []string{"kind"})
	jobBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "arca_extension_job_bytes_total", Help: "Bytes of objects backed up by finished jobs, by kind.",
	}, []string{"kind"})
	jobsRunning = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "arca_extension_jobs_running", Help: "Jobs running now.",
	})
	storageLocationAvailable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "arca_extension_storage_location_available", Help: "1 when the last probe of a storage location succeeded.",
	}, []string{"namespace", "name"})
)

func init() {
	metrics.Registry.MustRegister(jobsTotal, jobDuration, jobItems, jobBytes, jobsRunning, storageLocationAvailable)
}

func recordJob(kind string, phase v1alpha1.JobPhase, st *v1alpha1.JobStatusCommon) {
	jobsTotal.WithLabelValues(kind, string(phase)).Inc()
	if st != nil && st.StartTime != nil && st.CompletionTime != nil {
		jobDuration.WithLabelValues(kind).Observe(st.CompletionTime.Sub(st.StartTime.Time).Seconds())
	}
}
