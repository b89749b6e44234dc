package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

func (a *app) getCmd() *cobra.Command {
	var (
		output, namespace string
		allNamespaces     bool
	)
	cmd := &cobra.Command{
		Use:   "get KIND [NAME...]",
		Short: "Show resources of one kind as a table, YAML or JSON",
		Long: `Show resources of one kind, all of them or the named ones.
Tables are calicoctl's (-o wide for more columns); -o yaml and -o json print
resources that apply -f reads back.

Kinds (case-insensitive, singular, plural or short):
  ` + strings.ReplaceAll(validKinds(), "; ", "\n  "),
		Example: `  birdctl get nodes -o wide
  birdctl get ippool default-ipv4-ippool -o yaml
  birdctl get wep -A
  birdctl get bgppeers --datastore-type etcdv3 --etcd-endpoints http://10.0.0.1:2379`,
		GroupID: "ds",
		Args:    cobra.MinimumNArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return kindNames(), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(output, fmtTable, fmtWide, fmtYAML, fmtJSON); err != nil {
				return err
			}
			kind, err := kindFromAlias(args[0])
			if err != nil {
				return err
			}
			if allNamespaces && len(args) > 1 {
				return errors.New("--all-namespaces lists every resource; it takes no names")
			}
			ns := namespace
			if allNamespaces || !api.Namespaced(kind) {
				ns = ""
			}
			return a.get(cmd, kind, ns, args[1:], output)
		},
	}
	addOutputFlag(cmd, &output, fmtTable, fmtWide, fmtYAML, fmtJSON)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of workload endpoints")
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "workload endpoints of every namespace")
	a.addDatastoreFlags(cmd)
	return cmd
}

func (a *app) get(cmd *cobra.Command, kind, namespace string, names []string, output string) error {
	ctx, ds, done, err := a.openDatastore(cmd)
	if err != nil {
		return err
	}
	defer done()

	var (
		objs    []api.Resource
		missing []string
	)
	if len(names) == 0 {
		objs, err = a.list(ctx, ds, kind, namespace)
		if err != nil {
			return err
		}
	} else {
		for _, n := range names {
			kv, err := lookup(ctx, ds, kind, namespace, n)
			if errors.Is(err, datastore.ErrNotFound) {
				missing = append(missing, fmt.Sprintf("%s %q not found", kind, qualified(kind, namespace, n)))
				continue
			}
			if err != nil {
				return err
			}
			objs = append(objs, kv.Value)
		}
	}

	w := cmd.OutOrStdout()
	switch output {
	case fmtYAML:
		if len(objs) > 0 {
			b, err := api.MarshalYAML(objs...)
			if err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
	case fmtJSON:
		if err := writeResourcesJSON(w, kind, objs, len(names) == 1); err != nil {
			return err
		}
	default:
		t, err := a.table(ctx, ds, kind, namespace == "" && api.Namespaced(kind), output == fmtWide, objs)
		if err != nil {
			return err
		}
		if err := columns(w, t.header, t.rows); err != nil {
			return err
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

func qualified(kind, namespace, name string) string {
	if api.Namespaced(kind) && namespace != "" {
		return namespace + "/" + name
	}
	return name
}

// list returns every resource of kind (of namespace, for namespaced kinds,
// unless it is empty), sorted by namespace and name.
func (a *app) list(ctx context.Context, ds datastore.Datastore, kind, namespace string) ([]api.Resource, error) {
	prefix := datastore.KindPrefix(kind)
	if api.Namespaced(kind) && namespace != "" {
		prefix += namespace + "/"
	}
	res, err := ds.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	for _, bad := range res.Invalid {
		fmt.Fprintf(a.env.Stderr, "birdctl: warning: not shown, present but broken: %v\n", bad)
	}
	objs := make([]api.Resource, 0, len(res.KVs))
	for _, kv := range res.KVs {
		if kv.Value != nil && kv.Value.ResourceKind() == kind {
			objs = append(objs, kv.Value)
		}
	}
	sort.SliceStable(objs, func(i, j int) bool { return sortKey(objs[i]) < sortKey(objs[j]) })
	return objs, nil
}

func sortKey(r api.Resource) string {
	md := r.Meta()
	switch o := r.(type) {
	case *api.IPAMBlock:
		return cidrSortKey(o.Spec.CIDR)
	case *api.BlockAffinity:
		return o.Spec.Node + "\x00" + cidrSortKey(o.Spec.CIDR)
	}
	return md.Namespace + "\x00" + md.Name
}

// lookup finds one resource by the name a user gives: metadata.name, for
// blocks their CIDR (10.0.0.0/26 or 10.0.0.0-26), for affinities also
// "node/cidr".
func lookup(ctx context.Context, ds datastore.Datastore, kind, namespace, name string) (*datastore.KV, error) {
	switch kind {
	case api.KindIPAMHandle:
		return ds.Get(ctx, datastore.HandleKey(name))
	case api.KindIPAMConfiguration:
		if name != api.DefaultIPAMConfigName {
			return nil, &datastore.KeyError{Key: datastore.IPAMConfigKey, Err: fmt.Errorf("%w: the only IPAMConfiguration is named %q", datastore.ErrNotFound, api.DefaultIPAMConfigName)}
		}
		return ds.Get(ctx, datastore.IPAMConfigKey)
	case api.KindIPAMBlock:
		cidr := name
		if !strings.Contains(cidr, "/") {
			if c, err := api.CIDRFromKey(name); err == nil {
				cidr = c
			}
		}
		if p, err := api.ParseCIDR(cidr); err == nil {
			return ds.Get(ctx, datastore.BlockKey(p.Masked()))
		}
		// A name such as "10-65-0-0-26" (Calico's Kubernetes style).
		return findByName(ctx, ds, datastore.BlockPrefix, func(r api.Resource) bool { return r.Meta().Name == name })
	case api.KindBlockAffinity:
		return findByName(ctx, ds, datastore.HostPrefix, func(r api.Resource) bool {
			a, ok := r.(*api.BlockAffinity)
			return ok && (a.Metadata.Name == name || api.BlockAffinityName(a.Spec.Node, a.Spec.CIDR) == name || a.Spec.Node+"/"+a.Spec.CIDR == name)
		})
	}
	if api.Namespaced(kind) && namespace == "" {
		namespace = "default"
	}
	return ds.Get(ctx, datastore.ResourceKey(kind, namespace, name))
}

// writeResourcesJSON prints one resource, or a <Kind>List of them, in the
// form apply -f reads back.
func writeResourcesJSON(w io.Writer, kind string, objs []api.Resource, single bool) error {
	items := make([]json.RawMessage, len(objs))
	for i, o := range objs {
		b, err := api.MarshalJSON(o)
		if err != nil {
			return err
		}
		items[i] = b
	}
	var v any
	if single && len(items) == 1 {
		v = items[0]
	} else {
		v = struct {
			Kind       string            `json:"kind"`
			APIVersion string            `json:"apiVersion"`
			Items      []json.RawMessage `json:"items"`
		}{kind + "List", api.APIVersionOf(kind), items}
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// deleteByName deletes resources of one kind by name, all or nothing.
// Nodes release their IPAM first, unless skipIPAM; live ones are refused
// unless force.
func (a *app) deleteByName(cmd *cobra.Command, kindArg string, names []string, namespace string, skipNotExists, skipIPAM, force bool) error {
	kind, err := kindFromAlias(kindArg)
	if err != nil {
		return err
	}
	ctx, ds, done, err := a.openDatastore(cmd)
	if err != nil {
		return err
	}
	defer done()
	var (
		items    []item
		problems []string
		seen     = map[string]bool{}
	)
	for _, n := range names {
		kv, err := lookup(ctx, ds, kind, namespace, n)
		var broken *datastore.DecodeError
		if errors.As(err, &broken) { // present but broken: deleting fixes it
			kv, err = &datastore.KV{Key: broken.Key, Revision: broken.Revision}, nil
		}
		if errors.Is(err, datastore.ErrNotFound) {
			if !skipNotExists {
				problems = append(problems, fmt.Sprintf("%s %q does not exist", kind, qualified(kind, namespace, n)))
			}
			continue
		}
		if err != nil {
			return err
		}
		if seen[kv.Key] {
			continue
		}
		seen[kv.Key] = true
		obj := kv.Value
		if obj == nil { // present but broken
			obj = placeholder(kind, kv.Key)
		}
		items = append(items, item{obj: obj, key: kv.Key, current: kv})
	}
	if len(problems) > 0 {
		return fmt.Errorf("nothing was deleted:\n  %s", strings.Join(problems, "\n  "))
	}
	if err := a.refuseLiveNodes(ctx, ds, items, force); err != nil {
		return err
	}
	var released []string
	if kind == api.KindNode && !skipIPAM {
		if released, err = a.releaseNodes(ctx, ds, cmd.OutOrStdout(), items, false); err != nil {
			return err
		}
	}
	var ops []datastore.Op
	for _, it := range items {
		if !it.gone {
			ops = append(ops, datastore.Op{Type: datastore.OpDelete, Key: it.key, Revision: it.current.Revision})
		}
	}
	if err := a.commit(ctx, ds, ops, items, "deleted"); err != nil {
		return releasedNote(err, released)
	}
	a.dropStatusReports(ctx, ds, items)
	if len(items) == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "Successfully deleted 0 '%s' resource(s)\n", kind)
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Successfully deleted %s\n", countResources(items))
	return nil
}

// findByName lists prefix and returns the first object match accepts.
func findByName(ctx context.Context, ds datastore.Datastore, prefix string, match func(api.Resource) bool) (*datastore.KV, error) {
	res, err := ds.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for i := range res.KVs {
		if kv := &res.KVs[i]; kv.Value != nil && match(kv.Value) {
			return kv, nil
		}
	}
	return nil, &datastore.KeyError{Key: prefix + "...", Err: datastore.ErrNotFound}
}
