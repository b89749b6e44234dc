package datastore

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
)

// UnknownFields counts, per kind, the stored objects holding fields Roost
// does not know (a newer Calico's): they are kept and written back, and
// otherwise have no effect. Which objects and fields is in the log (one
// line per object and set of fields): a label per object would grow with
// the cluster. confd and roost-node register it with their metrics.
var UnknownFields = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "roost_datastore_unknown_fields",
	Help: "Stored objects holding fields Roost does not know (kept and written back, otherwise ignored), by kind; the log names them.",
}, []string{"kind"})

// reported maps a key to what was last reported for it.
var reported sync.Map // key -> unknownReport

type unknownReport struct{ kind, fields string }

// ReportUnknown logs, once per key and set of fields, the fields of obj
// (read at key) that Roost does not know, and keeps the UnknownFields
// metric in step.
func ReportUnknown(log logrus.FieldLogger, key string, obj api.Resource) {
	fields := strings.Join(api.UnknownFields(obj), ", ")
	prev, had := reported.Load(key)
	if (!had && fields == "") || (had && prev.(unknownReport).fields == fields) {
		return
	}
	if had {
		UnknownFields.WithLabelValues(prev.(unknownReport).kind).Dec()
	}
	if fields == "" {
		reported.Delete(key)
		return
	}
	kind := obj.ResourceKind()
	reported.Store(key, unknownReport{kind, fields})
	UnknownFields.WithLabelValues(kind).Inc()
	if log == nil {
		log = logrus.StandardLogger()
	}
	log.WithFields(logrus.Fields{"key": key, "fields": fields}).
		Warn("fields Roost does not know (a newer Calico's?): kept and written back, otherwise ignored")
}

// ForgetUnknown is ReportUnknown for a deleted key: it no longer counts.
func ForgetUnknown(key string) {
	if prev, had := reported.LoadAndDelete(key); had {
		UnknownFields.WithLabelValues(prev.(unknownReport).kind).Dec()
	}
}
