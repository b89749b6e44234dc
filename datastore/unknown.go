package datastore

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
)

// UnknownFields is 1 per stored object holding fields Roost does not know
// (a newer Calico's): they are kept and written back, and otherwise have
// no effect. confd and roost-node register it with their metrics.
var UnknownFields = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "roost_datastore_unknown_fields",
	Help: "1 per stored object holding fields Roost does not know (kept and written back, otherwise ignored), by key and fields.",
}, []string{"key", "fields"})

var reported sync.Map // key -> the fields last reported for it

// ReportUnknown logs, once per key and set of fields, the fields of obj
// (read at key) that Roost does not know, and keeps the UnknownFields
// metric in step.
func ReportUnknown(log logrus.FieldLogger, key string, obj api.Resource) {
	fields := strings.Join(api.UnknownFields(obj), ", ")
	prev, had := reported.Load(key)
	if (!had && fields == "") || (had && prev.(string) == fields) {
		return
	}
	if had {
		UnknownFields.DeleteLabelValues(key, prev.(string))
	}
	if fields == "" {
		reported.Delete(key)
		return
	}
	reported.Store(key, fields)
	UnknownFields.WithLabelValues(key, fields).Set(1)
	if log == nil {
		log = logrus.StandardLogger()
	}
	log.WithFields(logrus.Fields{"key": key, "fields": fields}).
		Warn("fields Roost does not know (a newer Calico's?): kept and written back, otherwise ignored")
}
