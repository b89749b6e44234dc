package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// TestNamespaceSelector: a pool's namespaceSelector is evaluated against
// the workload namespace's labels (projectcalico.org/name plus the labels
// of its kns.<ns> Profile) in automatic and specific assignments; a
// request no pool allows fails naming every pool and why it was skipped.
func TestNamespaceSelector(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ds datastore.Datastore, _ func(string) []byte) {
		ctx := ctxT(t)
		mkPool(t, ds, "prod", "10.80.0.0/24", 28, api.EncapNever, api.EncapNever)
		setPool(t, ds, "prod", func(p *api.IPPool) { p.Spec.NamespaceSelector = "projectcalico.org/name == 'prod'" })
		mkPool(t, ds, "team-a", "10.81.0.0/24", 28, api.EncapNever, api.EncapNever)
		setPool(t, ds, "team-a", func(p *api.IPPool) { p.Spec.NamespaceSelector = "team == 'a'" })
		mkPool(t, ds, "elsewhere", "10.82.0.0/24", 28, api.EncapNever, api.EncapNever)
		setPool(t, ds, "elsewhere", func(p *api.IPPool) { p.Spec.NodeSelector = "rack == 'x'" })
		mkPool(t, ds, "off", "10.83.0.0/24", 28, api.EncapNever, api.EncapNever)
		setPool(t, ds, "off", func(p *api.IPPool) { p.Spec.Disabled = true })
		prof := &api.Profile{Metadata: api.ObjectMeta{Name: "kns.dev"}, Spec: api.ProfileSpec{LabelsToApply: map[string]string{"pcns.team": "a", "pcns.projectcalico.org/name": "dev"}}}
		if _, err := ds.Create(ctx, prof); err != nil {
			t.Fatal(err)
		}
		c := New(ds, "n1", WithLogger(quietLog()))
		for _, tc := range []struct {
			name, ns string
			ip       string // a specific address; "" for automatic
			inPool   string // the pool the address must come from
			errs     []string
		}{
			{name: "name label selects the pool", ns: "prod", inPool: "10.80.0.0/24"},
			{name: "profile labels select the pool", ns: "dev", inPool: "10.81.0.0/24"},
			{name: "specific address in a pool of the namespace", ns: "prod", ip: "10.80.0.77", inPool: "10.80.0.0/24"},
			{name: "no pool for the namespace", ns: "default", errs: []string{
				"in namespace default", "no usable IP pool",
				`prod (10.80.0.0/24): namespaceSelector "projectcalico.org/name == 'prod'" does not match namespace default`,
				`team-a (10.81.0.0/24): namespaceSelector "team == 'a'" does not match namespace default`,
				`elsewhere (10.82.0.0/24): nodeSelector "rack == 'x'" does not match the node`,
				"off (10.83.0.0/24): disabled",
			}},
			{name: "specific address in another namespace's pool", ns: "default", ip: "10.80.0.78", errs: []string{
				"10.80.0.78 is in no usable IP pool", `prod (10.80.0.0/24): namespaceSelector "projectcalico.org/name == 'prod'" does not match namespace default`,
			}},
			{name: "outside any namespace a namespaceSelector sees no labels", ns: "", errs: []string{
				`prod (10.80.0.0/24): namespaceSelector "projectcalico.org/name == 'prod'" does not match a request outside any namespace`,
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := AssignArgs{Handle: "h-" + strings.ReplaceAll(tc.name, " ", "-"), Namespace: tc.ns, IPv6: FamilyOff}
				if tc.ip != "" {
					args.IPs = []netip.Addr{netip.MustParseAddr(tc.ip)}
				}
				got, err := c.Assign(ctx, args)
				if len(tc.errs) > 0 {
					if err == nil {
						t.Fatalf("assigned %v; want an error", got.Addrs())
					}
					if !errors.Is(err, ErrNoPool) {
						t.Errorf("error %v is not ErrNoPool", err)
					}
					for _, want := range tc.errs {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("error lacks %q:\n%v", want, err)
						}
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !netip.MustParsePrefix(tc.inPool).Contains(got.IPv4) {
					t.Errorf("got %v; want an address of %s", got.IPv4, tc.inPool)
				}
			})
		}
	})
}
