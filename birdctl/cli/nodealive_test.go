package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/connect"
	"github.com/roostnet/roost/node/heartbeat"
)

// open connects to the backend as a program other than birdctl would.
func (b *backend) open(t *testing.T) datastore.Datastore {
	t.Helper()
	cfg := datastore.Config{Type: b.env["DATASTORE_TYPE"], File: b.env["DATASTORE_FILE"]}
	if e := b.env["ETCD_ENDPOINTS"]; e != "" {
		cfg.EtcdEndpoints = e
	}
	ds, err := connect.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	return ds
}

// A Node whose agent is running is not deleted (its workloads still use
// the addresses the delete would release) unless --force; once the agent
// stops (its report withdrawn, or too old) the delete goes through and
// removes the report.
func TestDeleteLiveNodeRefused(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		rn := &runner{}
		seedNodeIPAM(t, rn, b)
		ds := b.open(t)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); heartbeat.Run(ctx, ds, "node1", time.Hour, logrus.New()) }()
		t.Cleanup(func() { stop(); <-done })
		key := datastore.StatusReportKey("node1")
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, err := ds.Get(context.Background(), key); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the agent's first report did not arrive")
			}
		}
		if b.name == "etcd" {
			if raw := b.raw(t, key); !strings.Contains(raw, `"time":"`) || !strings.Contains(raw, `"first_update":true`) {
				t.Errorf("report in Felix's shape: %s", raw)
			}
		}

		before := ipamState(t, rn, b)
		for _, args := range [][]string{{"delete", "node", "node1"}, {"delete", "node", "node1", "--skip-ipam"},
			{"delete", "-f", writeFile(t, "node.yaml", "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {name: node1}\n")}} {
			stderr := rn.mustFail(t, b.args(args...)...)
			for _, want := range []string{"nothing was deleted", "node node1 looks alive: its agent reported", key, "--force"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("%v: error lacks %q: %s", args, want, stderr)
				}
			}
			if got := ipamState(t, rn, b); got != before {
				t.Fatalf("%v changed the datastore:\n%s", args, got)
			}
		}
		// node2 has no report (never ran, or stopped long ago): deleted.
		rn.mustRun(t, b.args("delete", "node", "node2", "--skip-ipam")...)

		// The agent stops cleanly: its report goes, the delete works.
		stop()
		<-done
		if _, err := ds.Get(context.Background(), key); err == nil {
			t.Fatal("a clean stop left the report")
		}
		if r := rn.run(t, b.args("delete", "node", "node1")...); r.code != 0 || !strings.Contains(r.stdout, "Released 2 blocks") {
			t.Fatalf("delete after the agent stopped: %v", r)
		}

		// A crashed agent's report ages out; the delete then removes it.
		seedNodeIPAM(t, rn, b)
		stale := &api.StatusReport{Spec: api.StatusReportSpec{Time: time.Now().Add(-heartbeat.TTL - time.Second).UTC().Format(time.RFC3339)}}
		stale.Metadata.Name = "node1"
		if _, err := ds.Txn(context.Background(), datastore.Op{Type: datastore.OpPut, Value: stale}); err != nil {
			t.Fatal(err)
		}
		rn.mustRun(t, b.args("delete", "node", "node1")...)
		if _, err := b.open(t).Get(context.Background(), key); err == nil {
			t.Error("the deleted node's report is still stored")
		}

		// --force deletes a live one, with a warning.
		seedNodeIPAM(t, rn, b)
		fresh := &api.StatusReport{Spec: api.StatusReportSpec{Time: time.Now().UTC().Format(time.RFC3339)}}
		fresh.Metadata.Name = "node1"
		if _, err := ds.Txn(context.Background(), datastore.Op{Type: datastore.OpPut, Value: fresh}); err != nil {
			t.Fatal(err)
		}
		r := rn.run(t, b.args("delete", "node", "node1", "--force")...)
		if r.code != 0 || !strings.Contains(r.stderr, "node node1 looks alive") || !strings.Contains(r.stderr, "--force") {
			t.Fatalf("delete --force: %v", r)
		}
	})
}
