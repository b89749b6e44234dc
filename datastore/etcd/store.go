// Package etcd is the production datastore backend: etcd v3 in Calico's
// key layout (see datastore/keys.go), so Roost and Calico tools can share
// a cluster's data.
//
// Revisions are etcd ModRevisions. Every write is validated first and
// conditional writes are etcd transactions. Watches survive lost
// connections (resuming from the last delivered revision) and compaction
// (relisting), announcing both with datastore.Resync events.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
)

// Defaults.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	// DefaultPageSize bounds one List round trip, so that big prefixes
	// (thousands of workload endpoints) are read in slices at one revision.
	DefaultPageSize = 2000
)

// Option tunes a Store.
type Option func(*options)

type options struct {
	dialTimeout    time.Duration
	requestTimeout time.Duration
	pageSize       int64
	log            *logrus.Entry
	backoffMin     time.Duration
	backoffMax     time.Duration
	catchUpQuiet   time.Duration
}

// WithDialTimeout bounds connecting (and authenticating) in New.
func WithDialTimeout(d time.Duration) Option { return func(o *options) { o.dialTimeout = d } }

// WithRequestTimeout bounds each request whose context has no deadline
// (0: no bound).
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) { o.requestTimeout = d }
}

// WithPageSize sets how many keys one List request fetches.
func WithPageSize(n int64) Option { return func(o *options) { o.pageSize = n } }

// WithLogger sets the logger (default: logrus' standard logger).
func WithLogger(l *logrus.Entry) Option { return func(o *options) { o.log = l } }

// WithWatchBackoff sets the delays between attempts to re-establish a
// lost watch (default 100ms doubling up to 5s, each delay jittered
// below its ceiling: see internal/backoff).
func WithWatchBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// Store implements datastore.Datastore on etcd v3.
type Store struct {
	cli       *clientv3.Client
	auth      *tokenAuth // nil without ETCD_USERNAME
	endpoints []string
	opts      options
	log       *logrus.Entry

	ctx       context.Context // ends on Close; watches follow it
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

var _ datastore.Datastore = (*Store)(nil)

// New connects to the etcd cluster described by cfg (ETCD_ENDPOINTS,
// ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE, ETCD_USERNAME,
// ETCD_PASSWORD) and checks that it answers, so that a wrong address,
// certificate or password is reported here, naming the endpoints.
func New(ctx context.Context, cfg datastore.Config, opts ...Option) (*Store, error) {
	o := options{
		dialTimeout:    DefaultDialTimeout,
		requestTimeout: DefaultRequestTimeout,
		pageSize:       DefaultPageSize,
		backoffMin:     100 * time.Millisecond,
		backoffMax:     5 * time.Second,
		catchUpQuiet:   300 * time.Millisecond,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = logrus.NewEntry(logrus.StandardLogger())
	}
	if o.pageSize <= 0 {
		o.pageSize = DefaultPageSize
	}
	if o.backoffMin <= 0 {
		o.backoffMin = 100 * time.Millisecond
	}
	if o.backoffMax < o.backoffMin {
		o.backoffMax = o.backoffMin
	}

	cfg.Type = datastore.TypeEtcd
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	eps := cfg.Endpoints()
	if len(eps) == 0 {
		return nil, fmt.Errorf("etcd: %s lists no endpoint", datastore.EnvEtcdEndpoints)
	}
	epDesc := strings.Join(eps, ",")
	log := o.log.WithFields(logrus.Fields{"component": "datastore-etcd", "endpoints": epDesc})

	tlsCfg, err := tlsConfig(cfg, eps)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", epDesc, err)
	}
	if tlsCfg != nil && !anyHTTPS(eps) {
		log.Warn("TLS files are set but no endpoint is https://; connecting without TLS")
	}

	ccfg := clientv3.Config{
		Endpoints:            eps,
		DialTimeout:          o.dialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		TLS:                  tlsCfg,
		Logger:               zap.NewNop(), // we log what matters ourselves
		DialOptions: []grpc.DialOption{
			// gRPC's default reconnect backoff grows to 2 minutes; a node
			// agent must notice a restarted etcd sooner.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: o.dialTimeout,
			}),
		},
	}
	if cfg.EtcdUsername != "" && cfg.EtcdPassword == "" {
		return nil, fmt.Errorf("etcd %s: %s is set but %s is empty", epDesc, datastore.EnvEtcdUsername, datastore.EnvEtcdPassword)
	}
	var auth *tokenAuth
	if cfg.EtcdUsername != "" {
		// Our own token handling (auth.go), not clientv3's.
		auth = &tokenAuth{user: cfg.EtcdUsername, password: cfg.EtcdPassword, log: log}
		ccfg.DialOptions = append(ccfg.DialOptions, grpc.WithPerRPCCredentials(auth), grpc.WithChainUnaryInterceptor(auth.unary))
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: connecting: %w", epDesc, err)
	}

	pctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	if auth != nil {
		auth.conn = cli.ActiveConnection
		if err := auth.authenticate(pctx, 0); err != nil {
			cli.Close()
			if errors.Is(err, rpctypes.ErrAuthFailed) {
				return nil, fmt.Errorf("etcd %s: authentication as user %q failed: wrong %s or %s (%v)",
					epDesc, cfg.EtcdUsername, datastore.EnvEtcdUsername, datastore.EnvEtcdPassword, err)
			}
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("etcd %s: no answer within %s: %s", epDesc, o.dialTimeout, diagnose(eps, tlsCfg, o.dialTimeout))
			}
			return nil, fmt.Errorf("etcd %s: authenticating as %q: %w", epDesc, cfg.EtcdUsername, err)
		}
	}

	// Probe: one cheap read proves address, TLS and credentials.
	_, err = cli.Get(pctx, datastore.ResourcePrefix, clientv3.WithCountOnly())
	if err != nil {
		cli.Close()
		switch {
		case errors.Is(err, rpctypes.ErrPermissionDenied):
			return nil, fmt.Errorf("etcd %s: user %q may not read %s: %w", epDesc, cfg.EtcdUsername, datastore.ResourcePrefix, err)
		case errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrInvalidAuthToken):
			return nil, fmt.Errorf("etcd %s: authentication is enabled: set %s and %s: %w", epDesc, datastore.EnvEtcdUsername, datastore.EnvEtcdPassword, err)
		case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("etcd %s: no answer within %s: %s", epDesc, o.dialTimeout, diagnose(eps, tlsCfg, o.dialTimeout))
		}
		return nil, fmt.Errorf("etcd %s: %w", epDesc, err)
	}

	sctx, scancel := context.WithCancel(context.Background())
	s := &Store{cli: cli, auth: auth, endpoints: eps, opts: o, log: log, ctx: sctx, cancel: scancel}
	log.WithFields(logrus.Fields{"tls": tlsCfg != nil, "user": cfg.EtcdUsername}).Info("connected to etcd")
	return s, nil
}

func anyHTTPS(eps []string) bool {
	for _, e := range eps {
		if strings.HasPrefix(e, "https://") || strings.HasPrefix(e, "unixs://") {
			return true
		}
	}
	return false
}

// tlsConfig builds the client TLS configuration from the Calico settings;
// nil when neither files nor https endpoints ask for TLS.
func tlsConfig(cfg datastore.Config, eps []string) (*tls.Config, error) {
	if cfg.EtcdCACert == "" && cfg.EtcdCert == "" && cfg.EtcdKey == "" {
		if anyHTTPS(eps) {
			return &tls.Config{MinVersion: tls.VersionTLS12}, nil // system roots
		}
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.EtcdCACert != "" {
		pem, err := os.ReadFile(cfg.EtcdCACert)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", datastore.EnvEtcdCACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s=%s: no PEM certificate found", datastore.EnvEtcdCACert, cfg.EtcdCACert)
		}
		tc.RootCAs = pool
	}
	if cfg.EtcdCert != "" || cfg.EtcdKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.EtcdCert, cfg.EtcdKey)
		if err != nil {
			return nil, fmt.Errorf("%s=%s / %s=%s: %w", datastore.EnvEtcdCert, cfg.EtcdCert, datastore.EnvEtcdKey, cfg.EtcdKey, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Client gives access to the underlying etcd client (for tools and tests).
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close stops every watch and closes the connection. It may be called
// more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			s.closeErr = fmt.Errorf("etcd %s: close: %w", strings.Join(s.endpoints, ","), err)
		}
	})
	return s.closeErr
}

// reqCtx bounds a request whose context has no deadline.
func (s *Store) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || s.opts.requestTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opts.requestTimeout)
}

// opErr names the endpoints, the operation and the key of a failed request.
func (s *Store) opErr(op, key string, err error) error {
	return fmt.Errorf("etcd %s: %s %s: %w", strings.Join(s.endpoints, ","), op, key, err)
}

// prepare derives the key of obj (checking it against key when given),
// encodes it and checks that a reader will accept it: the bytes are
// decoded back exactly as Get would, which validates the object with
// defaults applied (api.Validate). The decoded object is returned.
func prepare(obj api.Resource, key string) (string, []byte, api.Resource, error) {
	if obj == nil {
		return "", nil, nil, fmt.Errorf("etcd: no value to write at %q", key)
	}
	derived, err := datastore.KeyFor(obj)
	if err != nil {
		return "", nil, nil, err
	}
	if key == "" {
		key = derived
	} else if key != derived {
		return "", nil, nil, fmt.Errorf("etcd: key %s does not match its value (%s %q belongs at %s)",
			key, obj.ResourceKind(), obj.Meta().Name, derived)
	}
	data, err := datastore.EncodeValue(obj)
	if err != nil {
		return "", nil, nil, fmt.Errorf("etcd: encode %s: %w", key, err)
	}
	dec, err := datastore.DecodeValue(key, data, 0)
	if err != nil {
		return "", nil, nil, err
	}
	return key, data, dec, nil
}

// stamped is obj, or a copy of it with the UID and creationTimestamp
// that datastore.StampMetadata gives it; for an update that lacks them,
// the stored object (read first) supplies them. A stored object that is
// broken or gone is none: a new UID and time are given.
func (s *Store) stamped(ctx context.Context, obj api.Resource, key string, create bool) (api.Resource, error) {
	if !datastore.NeedsStamp(obj) {
		return obj, nil
	}
	c := api.Clone(obj)
	var old api.Resource
	if !create {
		if key == "" {
			key, _ = datastore.KeyFor(obj) // a bad key fails in prepare
		}
		kv, err := s.Get(ctx, key)
		var de *datastore.DecodeError
		switch {
		case err == nil:
			old = kv.Value
		case errors.Is(err, datastore.ErrNotFound), errors.As(err, &de):
		default:
			return nil, err
		}
	}
	datastore.StampMetadata(ctx, c, old)
	return c, nil
}

func setRevision(obj api.Resource, rev int64) {
	obj.Meta().ResourceVersion = strconv.FormatInt(rev, 10)
}

// ours tells keys of the Calico layout Roost models from other keys
// sharing a prefix (Felix configuration, policies, IPAM config...), which
// are skipped silently, as are keys under a modelled prefix that no
// object can have (".../nodes/a/b"): only an object's key can hold a
// broken object.
func ours(key string) bool {
	for _, k := range api.Kinds {
		if p := datastore.KindPrefix(k); p != "" && strings.HasPrefix(key, p) {
			_, err := datastore.ParseKey(key)
			return err == nil
		}
	}
	return false
}

func decodeKV(kv *mvccpb.KeyValue) (api.Resource, error) {
	return datastore.DecodeValue(string(kv.Key), kv.Value, kv.ModRevision)
}

// Get implements datastore.Datastore.
func (s *Store) Get(ctx context.Context, key string) (*datastore.KV, error) {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, s.opErr("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, &datastore.KeyError{Key: key, Err: datastore.ErrNotFound}
	}
	kv := resp.Kvs[0]
	val, err := decodeKV(kv)
	if err != nil {
		s.log.WithFields(logrus.Fields{"key": key, "revision": kv.ModRevision}).WithError(err).Warn("invalid value in etcd")
		return nil, datastore.NewDecodeError(key, kv.ModRevision, err)
	}
	return &datastore.KV{Key: key, Value: val, Revision: kv.ModRevision}, nil
}

// keyRange turns a prefix into an etcd key range ("" = everything).
func keyRange(prefix string) (start, end string) {
	if prefix == "" {
		return "\x00", "\x00"
	}
	return prefix, clientv3.GetPrefixRangeEnd(prefix)
}

// List implements datastore.Datastore. Big prefixes are read in pages,
// all at the revision of the first page.
func (s *Store) List(ctx context.Context, prefix string) (*datastore.ListResult, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var lr *datastore.ListResult
		lr, err = s.list(ctx, prefix)
		if err == nil {
			return lr, nil
		}
		// Compacted between two pages: start again at a newer revision.
		if !errors.Is(err, rpctypes.ErrCompacted) {
			break
		}
	}
	return nil, s.opErr("list", prefix, err)
}

// listPageHook, when set by tests, runs between pages.
var listPageHook func()

func (s *Store) list(ctx context.Context, prefix string) (*datastore.ListResult, error) {
	start, end := keyRange(prefix)
	lr := &datastore.ListResult{}
	key := start
	for {
		rctx, cancel := s.reqCtx(ctx)
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(s.opts.pageSize)}
		if lr.Revision > 0 {
			opts = append(opts, clientv3.WithRev(lr.Revision))
		}
		resp, err := s.cli.Get(rctx, key, opts...)
		cancel()
		if err != nil {
			return nil, err
		}
		if lr.Revision == 0 {
			lr.Revision = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			if !ours(k) {
				continue
			}
			val, err := decodeKV(kv)
			if err != nil {
				s.log.WithFields(logrus.Fields{"key": k, "revision": kv.ModRevision}).WithError(err).Warn("invalid value in etcd: the object is present and broken")
				lr.Invalid = append(lr.Invalid, datastore.NewDecodeError(k, kv.ModRevision, err))
				continue
			}
			lr.KVs = append(lr.KVs, datastore.KV{Key: k, Value: val, Revision: kv.ModRevision})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return lr, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		if listPageHook != nil {
			listPageHook()
		}
	}
}

// Create implements datastore.Datastore.
func (s *Store) Create(ctx context.Context, obj api.Resource) (*datastore.KV, error) {
	obj, err := s.stamped(ctx, obj, "", true)
	if err != nil {
		return nil, err
	}
	key, data, val, err := prepare(obj, "")
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).
		Commit()
	if err != nil {
		return nil, s.opErr("create", key, err)
	}
	if !resp.Succeeded {
		return nil, &datastore.KeyError{Key: key, Err: datastore.ErrExists}
	}
	rev := resp.Header.Revision
	setRevision(val, rev)
	return &datastore.KV{Key: key, Value: val, Revision: rev}, nil
}

// exists is the condition "key is present" (rev 0) or "key is unchanged
// since rev".
func existsCmp(key string, rev int64) clientv3.Cmp {
	if rev > 0 {
		return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	return clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
}

// missingOrConflict explains a failed existsCmp from the key's state.
func missingOrConflict(key string, kvs []*mvccpb.KeyValue) error {
	if len(kvs) == 0 {
		return &datastore.KeyError{Key: key, Err: datastore.ErrNotFound}
	}
	return &datastore.KeyError{Key: key, Err: datastore.ErrConflict}
}

// Update implements datastore.Datastore.
func (s *Store) Update(ctx context.Context, kv *datastore.KV) (*datastore.KV, error) {
	if kv == nil {
		return nil, errors.New("etcd: update of a nil KV")
	}
	obj, err := s.stamped(ctx, kv.Value, kv.Key, false)
	if err != nil {
		return nil, err
	}
	key, data, val, err := prepare(obj, kv.Key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(existsCmp(key, kv.Revision)).
		Then(clientv3.OpPut(key, string(data))).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return nil, s.opErr("update", key, err)
	}
	if !resp.Succeeded {
		return nil, missingOrConflict(key, resp.Responses[0].GetResponseRange().Kvs)
	}
	rev := resp.Header.Revision
	setRevision(val, rev)
	return &datastore.KV{Key: key, Value: val, Revision: rev}, nil
}

// Delete implements datastore.Datastore.
func (s *Store) Delete(ctx context.Context, key string, revision int64) error {
	if key == "" {
		return errors.New("etcd: delete needs a key")
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(existsCmp(key, revision)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return s.opErr("delete", key, err)
	}
	if !resp.Succeeded {
		return missingOrConflict(key, resp.Responses[0].GetResponseRange().Kvs)
	}
	return nil
}

// Txn implements datastore.Datastore: one etcd transaction holding every
// condition. When it fails, its else branch reads every key at that same
// revision, which tells the first operation whose condition failed.
func (s *Store) Txn(ctx context.Context, ops ...datastore.Op) (int64, error) {
	if len(ops) == 0 {
		return 0, errors.New("etcd: empty transaction")
	}
	keys := make([]string, len(ops))
	var cmps []clientv3.Cmp
	var thens, elses []clientv3.Op
	seen := map[string]int{}
	for i, op := range ops {
		var (
			key  = op.Key
			data []byte
			err  error
		)
		switch op.Type {
		case datastore.OpCreate, datastore.OpUpdate, datastore.OpPut:
			obj, serr := s.stamped(ctx, op.Value, op.Key, op.Type == datastore.OpCreate)
			if serr != nil {
				return 0, fmt.Errorf("transaction op %d: %w", i+1, serr)
			}
			key, data, _, err = prepare(obj, op.Key)
			if err != nil {
				return 0, fmt.Errorf("transaction op %d: %w", i+1, err)
			}
			thens = append(thens, clientv3.OpPut(key, string(data)))
		case datastore.OpDelete:
			if key == "" && op.Value != nil {
				if key, err = datastore.KeyFor(op.Value); err != nil {
					return 0, fmt.Errorf("transaction op %d: %w", i+1, err)
				}
			}
			if key == "" {
				return 0, fmt.Errorf("transaction op %d: delete needs a key", i+1)
			}
			thens = append(thens, clientv3.OpDelete(key))
		default:
			return 0, fmt.Errorf("transaction op %d: unknown operation type %d", i+1, op.Type)
		}
		if j, dup := seen[key]; dup {
			return 0, fmt.Errorf("transaction ops %d and %d both write %s", j+1, i+1, key)
		}
		seen[key] = i
		keys[i] = key
		switch {
		case op.Type == datastore.OpCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		case op.Type == datastore.OpPut && op.Revision == 0:
			// unconditional
		default:
			cmps = append(cmps, existsCmp(key, op.Revision))
		}
		elses = append(elses, clientv3.OpGet(key, clientv3.WithKeysOnly()))
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(thens...).Else(elses...).Commit()
	if err != nil {
		return 0, s.opErr("transaction on", strings.Join(keys, " "), err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	for i, op := range ops {
		kvs := resp.Responses[i].GetResponseRange().Kvs
		switch {
		case op.Type == datastore.OpCreate:
			if len(kvs) > 0 {
				return 0, &datastore.KeyError{Key: keys[i], Err: datastore.ErrExists}
			}
		case op.Type == datastore.OpPut && op.Revision == 0:
		case len(kvs) == 0:
			return 0, &datastore.KeyError{Key: keys[i], Err: datastore.ErrNotFound}
		case op.Revision > 0 && kvs[0].ModRevision != op.Revision:
			return 0, &datastore.KeyError{Key: keys[i], Err: datastore.ErrConflict}
		}
	}
	// Not reachable: the reads share the failed comparison's revision.
	return 0, &datastore.KeyError{Key: keys[0], Err: datastore.ErrConflict}
}

// diagnose explains why no endpoint answers, since gRPC only reports the
// deadline: it dials each endpoint and tries the TLS handshake itself.
func diagnose(eps []string, tc *tls.Config, timeout time.Duration) string {
	timeout = min(max(timeout/2, 500*time.Millisecond), 3*time.Second)
	var msgs []string
	for _, ep := range eps {
		msgs = append(msgs, ep+": "+diagnoseOne(ep, tc, timeout))
	}
	return strings.Join(msgs, "; ")
}

func diagnoseOne(ep string, tc *tls.Config, timeout time.Duration) string {
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" {
		return fmt.Sprintf("not a URL like http://host:2379 (%v)", err)
	}
	tcp := func() (net.Conn, error) { return net.DialTimeout("tcp", u.Host, timeout) }
	conn, err := tcp()
	if err != nil {
		return "cannot connect: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if u.Scheme != "https" {
		// A TLS server behind an http:// URL is a common mistake.
		probe := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		if probe.Handshake() == nil {
			return "the server speaks TLS: use an https:// endpoint and set the TLS files"
		}
		return "connected, but etcd did not answer (is it healthy?)"
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tc != nil {
		cfg = tc.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	tconn := tls.Client(conn, cfg)
	if err := tconn.Handshake(); err != nil {
		return "TLS handshake failed: " + err.Error()
	}
	// With TLS 1.3 a rejected client certificate shows on the first read.
	_ = tconn.SetReadDeadline(time.Now().Add(timeout / 2))
	if _, err := tconn.Read(make([]byte, 1)); err != nil && !isTimeout(err) && !errors.Is(err, io.EOF) {
		return "TLS rejected: " + err.Error()
	}
	return "connected with TLS, but etcd did not answer (is it healthy?)"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
