package datastore

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// TestReportUnknown: a stored object with fields Roost does not know is
// decoded (not broken), logged once per key and set of fields, and counted
// in roost_datastore_unknown_fields (by kind) until it no longer has them.
func TestReportUnknown(t *testing.T) {
	hook := logtest.NewGlobal() // DecodeValue reports through the standard logger
	defer hook.Reset()
	key := "/calico/resources/v3/projectcalico.org/bgppeers/report-test"
	v1 := `{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"report-test"},"spec":{"peerIP":"10.0.0.1","asNumber":65000,"futureKnob":true}}`
	v2 := `{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"report-test"},"spec":{"peerIP":"10.0.0.1","asNumber":65000}}`
	gauge := func() float64 {
		var m dto.Metric
		if err := UnknownFields.WithLabelValues("BGPPeer").Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetGauge().GetValue()
	}
	base := gauge()
	for i, step := range []struct {
		value string
		logs  int
		count float64 // objects counted, above base
	}{
		{v1, 1, 1},
		{v1, 1, 1}, // again: not logged again, not counted twice
		{v2, 1, 0},
		{v1, 2, 1},
		{"", 2, 0}, // deleted
	} {
		if step.value == "" {
			ForgetUnknown(key)
		} else if _, err := DecodeValue(key, []byte(step.value), 1); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		n := 0
		for _, e := range hook.AllEntries() {
			if e.Level == logrus.WarnLevel && e.Data["key"] == key {
				n++
			}
		}
		if n != step.logs {
			t.Errorf("step %d: %d warnings, want %d", i, n, step.logs)
		}
		if got := gauge() - base; got != step.count {
			t.Errorf("step %d: gauge %v above the start, want %v", i, got, step.count)
		}
	}
}
