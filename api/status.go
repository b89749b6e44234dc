package api

import "time"

// KindStatusReport is a node agent's sign of life: Calico Felix's status
// report, which the agent rewrites every few seconds (etcd:
// /calico/felix/v2/no-region/host/<node>/status). It is an internal record,
// like the IPAM ones, but not a kind users apply or get (not in Kinds).
const KindStatusReport = "StatusReport"

// StatusReport is one node's report; its name is the node's.
type StatusReport struct {
	TypeMeta
	Metadata ObjectMeta       `json:"metadata"`
	Spec     StatusReportSpec `json:"spec"`
}

// StatusReportSpec is Felix's status JSON.
type StatusReportSpec struct {
	// Time is when the report was written (RFC 3339, UTC).
	Time string `json:"time"`
	// Uptime is how long the agent had been running, in seconds.
	Uptime float64 `json:"uptime"`
	// FirstUpdate: the agent's first report since it started.
	FirstUpdate bool `json:"first_update"`
}

// Reported parses Time.
func (s *StatusReportSpec) Reported() (time.Time, error) { return time.Parse(time.RFC3339Nano, s.Time) }

func (r *StatusReport) ResourceKind() string { return KindStatusReport }
func (r *StatusReport) Meta() *ObjectMeta    { return &r.Metadata }
func (r *StatusReport) withTypeMeta() Resource {
	c := *r
	c.TypeMeta.set(KindStatusReport)
	return &c
}
