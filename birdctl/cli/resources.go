package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// maxTxnOps is etcd's default limit of operations in one transaction.
// Larger batches are written in several transactions.
const maxTxnOps = datastore.MaxTxnOps

type mutation int

const (
	opApply mutation = iota
	opCreate
	opReplace
	opDelete
)

var mutationInfo = map[mutation]struct{ verb, past, short, long string }{
	opApply: {"apply", "applied", "Create or update resources from a file or stdin",
		`Create the resources of FILE that do not exist and update those that do,
keeping their uid and creationTimestamp. A resourceVersion in the input makes
the update conditional on it.`},
	opCreate: {"create", "created", "Create resources from a file or stdin; fails if one exists",
		`Create the resources of FILE. Fails, writing nothing, if any of them exists.`},
	opReplace: {"replace", "replaced", "Replace existing resources from a file or stdin; fails if one is missing",
		`Replace the resources of FILE, keeping their uid and creationTimestamp.
Fails, writing nothing, if any of them does not exist. A resourceVersion in
the input makes the update conditional on it.`},
	opDelete: {"delete", "deleted", "Delete resources named in a file, or by kind and name",
		`Delete the resources named by FILE (only kind and metadata matter), or the
resources KIND NAME... Fails, deleting nothing, if any of them does not exist,
unless --skip-not-exists is given.

Deleting a Node also releases what it holds, as calicoctl does: its
workload endpoints (spec.node, any namespace) and their addresses, its
tunnel addresses, its IPAM blocks with their affinities, and the counts of
the handles with addresses in those blocks. The Node is deleted last; if
the release fails midway, running the delete again finishes it.
--skip-ipam deletes only the Node.

A Node whose agent is running is not deleted (its workloads still use the
addresses a delete releases): roost-node rewrites the node's status report
every 30 s, and a report younger than 90 s counts as alive. Stop roost-node
on that host first, or give --force.`},
}

const inputHelp = `
FILE holds one or more YAML documents ("---" separated) or JSON values, as
calicoctl apply takes them: kind, apiVersion, metadata and spec, or a List
with items. "-" reads stdin; a directory reads its *.yaml, *.yml and *.json
files. Every document is checked first: if any is invalid, the errors are
printed (file:line, kind, name, field and value) and nothing is written.
The writes go to the datastore in one transaction (all or nothing).`

func (a *app) applyCmd() *cobra.Command   { return a.mutationCmd(opApply) }
func (a *app) createCmd() *cobra.Command  { return a.mutationCmd(opCreate) }
func (a *app) replaceCmd() *cobra.Command { return a.mutationCmd(opReplace) }

func (a *app) deleteCmd() *cobra.Command { return a.mutationCmd(opDelete) }

func (a *app) mutationCmd(op mutation) *cobra.Command {
	info := mutationInfo[op]
	var (
		files         []string
		skipNotExists bool
		skipIPAM      bool
		force         bool
		namespace     string
	)
	use := info.verb + " -f FILE|-"
	example := fmt.Sprintf("  birdctl %s -f pools.yaml\n  birdctl get ippools -o yaml | birdctl %s -f -", info.verb, info.verb)
	if op == opDelete {
		use = "delete (-f FILE|- | KIND NAME...)"
		example = "  birdctl delete -f pools.yaml\n  birdctl delete ippool pool1\n  birdctl delete wep -n default host1-k8s-pod1-eth0\n  birdctl delete node node3\n  birdctl delete node node3 --skip-ipam"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   info.short,
		Long:    info.long + "\n" + inputHelp,
		Example: example,
		GroupID: "ds",
		RunE: func(cmd *cobra.Command, args []string) error {
			if op == opDelete && len(args) > 0 {
				if len(files) > 0 {
					return errors.New("give either -f FILE or KIND NAME..., not both")
				}
				if len(args) < 2 {
					return errors.New("delete KIND NAME...: a name is needed")
				}
				return a.deleteByName(cmd, args[0], args[1:], namespace, skipNotExists, skipIPAM, force)
			}
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (the resources come from -f FILE)", args)
			}
			if len(files) == 0 {
				return errors.New("-f FILE (or - for stdin) is required")
			}
			objs, err := a.readInputs(files)
			if err != nil {
				return err
			}
			return a.mutate(cmd, op, objs, skipNotExists, skipIPAM, force)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file or directory holding the resources, - for stdin (repeatable)")
	cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	if op == opDelete {
		cmd.Flags().BoolVar(&skipNotExists, "skip-not-exists", false, "ignore resources that do not exist")
		cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of workload endpoints deleted by name")
		cmd.Flags().BoolVar(&skipIPAM, "skip-ipam", false, "delete only the Node: keep its workload endpoints, IPAM blocks, affinities and handles")
		cmd.Flags().BoolVar(&force, "force", false, "delete a Node even though its agent reported itself alive")
		cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return kindNames(), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
	}
	a.addDatastoreFlags(cmd)
	return cmd
}

// readInputs reads and decodes every file; it fails with every problem
// found if any document is invalid.
func (a *app) readInputs(files []string) ([]api.Resource, error) {
	var (
		objs []api.Resource
		errs []error
	)
	for _, f := range files {
		sources, err := expandInput(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, src := range sources {
			var data []byte
			name := src
			if src == "-" {
				name = "stdin"
				data, err = io.ReadAll(a.env.Stdin)
			} else {
				data, err = os.ReadFile(src)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			got, err := api.DecodeAll(data, name, api.DecodeOptions{})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, o := range got {
				if u := api.UnknownFields(o); len(u) > 0 {
					fmt.Fprintf(a.env.Stderr, "warning: %s %q: fields Roost does not know are kept as they are and have no effect: %s\n",
						o.ResourceKind(), o.Meta().Name, strings.Join(u, ", "))
				}
			}
			objs = append(objs, got...)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid input, nothing was written:\n%w", indentErr(errors.Join(errs...)))
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("no resources found in %s", strings.Join(files, ", "))
	}
	return objs, nil
}

// expandInput lists the files of a directory, or returns the path itself.
func expandInput(path string) ([]string, error) {
	if path == "-" {
		return []string{path}, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		ext := strings.ToLower(filepath.Ext(n))
		if e.IsDir() || strings.HasPrefix(n, ".") || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		out = append(out, filepath.Join(path, n))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml, *.yml or *.json files", path)
	}
	return out, nil
}

// indentErr puts every line of err two spaces in.
type indented struct{ err error }

func (e indented) Error() string {
	return "  " + strings.ReplaceAll(e.err.Error(), "\n", "\n  ")
}
func (e indented) Unwrap() error { return e.err }

func indentErr(err error) error { return indented{err} }

// describe names a resource for messages: `IPPool "pool1"`,
// `WorkloadEndpoint "ns/name"`.
func describe(obj api.Resource) string {
	md := obj.Meta()
	name := md.Name
	switch o := obj.(type) {
	case *api.BlockAffinity:
		name = o.Spec.Node + " " + o.Spec.CIDR
	case *api.IPAMBlock:
		name = o.Spec.CIDR
	}
	if md.Namespace != "" {
		name = md.Namespace + "/" + name
	}
	return fmt.Sprintf("%s %q", obj.ResourceKind(), name)
}

// item is one resource of a batch with its key and current state.
type item struct {
	obj     api.Resource
	key     string
	current *datastore.KV // nil when absent
	gone    bool          // already deleted (by releasing a node)
}

// mutate writes a batch: every check first, then one transaction. Nodes
// deleted release their IPAM first, unless skipIPAM; live ones are refused
// unless force.
func (a *app) mutate(cmd *cobra.Command, op mutation, objs []api.Resource, skipNotExists, skipIPAM, force bool) error {
	info := mutationInfo[op]
	items := make([]item, 0, len(objs))
	seen := map[string]bool{}
	for _, o := range objs {
		key, err := datastore.KeyFor(o)
		if err != nil {
			return fmt.Errorf("invalid input, nothing was written: %w", err)
		}
		if seen[key] {
			return fmt.Errorf("invalid input, nothing was written: %s appears more than once", describe(o))
		}
		seen[key] = true
		items = append(items, item{obj: o, key: key})
	}

	ctx, ds, done, err := a.openDatastore(cmd)
	if err != nil {
		return err
	}
	defer done()

	var problems []string
	kept := items[:0]
	for _, it := range items {
		kv, err := current(ctx, ds, it.key)
		switch {
		case errors.Is(err, datastore.ErrNotFound):
		case err != nil:
			return fmt.Errorf("read %s: %w", describe(it.obj), err)
		default:
			it.current = kv
		}
		switch {
		case op == opCreate && it.current != nil:
			problems = append(problems, describe(it.obj)+" already exists")
		case (op == opReplace || op == opDelete) && it.current == nil:
			if op == opDelete && skipNotExists {
				continue
			}
			problems = append(problems, describe(it.obj)+" does not exist")
		}
		kept = append(kept, it)
	}
	items = kept
	if len(problems) > 0 {
		return fmt.Errorf("nothing was %s:\n  %s", info.past, strings.Join(problems, "\n  "))
	}

	buildOps := func() ([]datastore.Op, error) {
		ops := make([]datastore.Op, 0, len(items))
		for _, it := range items {
			if it.gone {
				continue
			}
			o, err := a.buildOp(op, it)
			if err != nil {
				return nil, fmt.Errorf("nothing was %s: %w", info.past, err)
			}
			ops = append(ops, o)
		}
		return ops, nil
	}
	ops, err := buildOps() // every check before a node is released
	if err != nil {
		return err
	}
	if op == opDelete {
		if err := a.refuseLiveNodes(ctx, ds, items, force); err != nil {
			return err
		}
	}
	var released []string
	if op == opDelete && !skipIPAM {
		if released, err = a.releaseNodes(ctx, ds, cmd.OutOrStdout(), items, true); err != nil {
			return err
		}
		if ops, err = buildOps(); err != nil {
			return err
		}
	}
	if err := a.commit(ctx, ds, ops, items, info.past); err != nil {
		return releasedNote(err, released)
	}
	if op == opDelete {
		a.dropStatusReports(ctx, ds, items)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Successfully %s %s\n", info.past, countResources(items))
	return nil
}

// releasedNote adds to the error of a delete that the nodes' IPAM was
// released already.
func releasedNote(err error, nodes []string) error {
	if len(nodes) == 0 {
		return err
	}
	return fmt.Errorf("%w\n(the workload endpoints and IPAM of node %s were released already; run the delete again to delete the Node)", err, strings.Join(nodes, ", "))
}

// buildOp turns one checked item into a transaction operation.
func (a *app) buildOp(op mutation, it item) (datastore.Op, error) {
	md := it.obj.Meta()
	var rev int64
	if rv := md.ResourceVersion; rv != "" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n <= 0 {
			return datastore.Op{}, fmt.Errorf("%s: metadata.resourceVersion=%q is not a revision", describe(it.obj), rv)
		}
		rev = n
	}
	switch {
	case op == opDelete:
		if rev == 0 {
			rev = it.current.Revision
		}
		return datastore.Op{Type: datastore.OpDelete, Key: it.key, Revision: rev}, nil
	case it.current == nil: // create, or apply of a new resource
		md.ResourceVersion = "" // UID and creationTimestamp: datastore.StampMetadata
		return datastore.Op{Type: datastore.OpCreate, Key: it.key, Value: it.obj}, nil
	default: // replace, or apply of an existing resource
		if rev == 0 {
			rev = it.current.Revision
		}
		keepNodeStatusAnswer(it.obj, it.current.Value)
		md.ResourceVersion = ""
		return datastore.Op{Type: datastore.OpUpdate, Key: it.key, Value: it.obj, Revision: rev}, nil
	}
}

// keepNodeStatusAnswer keeps a CalicoNodeStatus's stored answer when the
// input has none and asks the same node, as a status subresource would:
// re-applying a request's YAML does not blank what the node reported.
func keepNodeStatusAnswer(in, stored api.Resource) {
	s, ok1 := in.(*api.CalicoNodeStatus)
	old, ok2 := stored.(*api.CalicoNodeStatus)
	if ok1 && ok2 && s.Spec.Node == old.Spec.Node && s.Status.LastUpdated.IsZero() &&
		s.Status.SameContent(&api.CalicoNodeStatusStatus{}) {
		s.Status = old.Status
	}
}

// commit runs the operations in one transaction, or in transactions of
// maxTxnOps when etcd gets more (its default limit), saying so. what is the
// past participle for messages ("applied").
func (a *app) commit(ctx context.Context, ds datastore.Datastore, ops []datastore.Op, items []item, what string) error {
	limit := len(ops)
	if a.dsType == datastore.TypeEtcd {
		limit = maxTxnOps
	}
	if len(ops) > limit {
		fmt.Fprintf(a.env.Stderr, "birdctl: warning: %d changes are written in transactions of %d; a failure leaves the earlier ones written\n", len(ops), maxTxnOps)
	}
	for start := 0; start < len(ops); start += limit {
		end := min(start+limit, len(ops))
		if _, err := ds.Txn(ctx, ops[start:end]...); err != nil {
			err = txnError(err, items)
			if start > 0 {
				return fmt.Errorf("only the first %d of %d resources were %s: %w", start, len(ops), what, err)
			}
			return fmt.Errorf("nothing was %s: %w", what, err)
		}
	}
	return nil
}

// countResources says "2 'IPPool' resource(s)" or "5 resource(s)".
func countResources(items []item) string {
	kinds := map[string]bool{}
	for _, it := range items {
		kinds[it.obj.ResourceKind()] = true
	}
	if len(kinds) == 1 {
		return fmt.Sprintf("%d '%s' resource(s)", len(items), items[0].obj.ResourceKind())
	}
	return fmt.Sprintf("%d resource(s)", len(items))
}

// txnError names the resource whose condition failed.
func txnError(err error, items []item) error {
	var ke *datastore.KeyError
	if errors.As(err, &ke) {
		for _, it := range items {
			if it.key == ke.Key {
				return fmt.Errorf("%s: %w", describe(it.obj), ke.Err)
			}
		}
	}
	return err
}
