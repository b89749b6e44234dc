package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sirupsen/logrus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
)

// tokenAuth authenticates to etcd with ETCD_USERNAME / ETCD_PASSWORD and
// keeps the token fresh. It is done here rather than by clientv3, which
// re-authenticates from inside its retry loop over the request that
// carried the stale token: after an etcd restart past the token's TTL,
// confd and roost-node were seen retrying with one stale token for good.
// Here every request that etcd rejects for its token (invalid, expired,
// missing) re-authenticates once — one Authenticate for all concurrent
// requests, sent without a token — and is retried with the new token;
// watches re-authenticate through the request that starts each attempt.
type tokenAuth struct {
	user, password string
	conn           func() *grpc.ClientConn
	log            *logrus.Entry

	mu    sync.RWMutex
	token string
	gen   uint64 // counts tokens obtained

	authMu sync.Mutex // one Authenticate at a time
}

const authenticateMethod = "/etcdserverpb.Auth/Authenticate"

// withoutToken marks the context of an Authenticate call.
type withoutToken struct{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (a *tokenAuth) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ctx.Value(withoutToken{}) != nil {
		return nil, nil
	}
	a.mu.RLock()
	t := a.token
	a.mu.RUnlock()
	if t == "" {
		return nil, nil
	}
	return map[string]string{rpctypes.TokenFieldNameGRPC: t}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// token goes over plain HTTP endpoints too, as with clientv3.
func (a *tokenAuth) RequireTransportSecurity() bool { return false }

func (a *tokenAuth) generation() uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.gen
}

// authenticate gets a new token, unless one newer than gen was obtained
// meanwhile (another request re-authenticated first).
func (a *tokenAuth) authenticate(ctx context.Context, gen uint64) error {
	a.authMu.Lock()
	defer a.authMu.Unlock()
	if a.generation() != gen {
		return nil
	}
	resp, err := pb.NewAuthClient(a.conn()).Authenticate(context.WithValue(ctx, withoutToken{}, true),
		&pb.AuthenticateRequest{Name: a.user, Password: a.password})
	token := ""
	switch {
	case err == nil:
		token = resp.Token
	case errors.Is(rpctypes.Error(err), rpctypes.ErrAuthNotEnabled):
		// Authentication is off on the server: send no token.
	default:
		return rpctypes.Error(err)
	}
	a.mu.Lock()
	a.token = token
	a.gen++
	first := a.gen == 1
	a.mu.Unlock()
	if !first {
		a.log.WithField("user", a.user).Info("re-authenticated with etcd (its token had become invalid)")
	}
	return nil
}

// tokenRejected tells an error etcd returns for the request's token.
func tokenRejected(err error) bool {
	err = rpctypes.Error(err)
	return errors.Is(err, rpctypes.ErrInvalidAuthToken) || errors.Is(err, rpctypes.ErrUserEmpty) ||
		errors.Is(err, rpctypes.ErrAuthOldRevision)
}

// unary re-authenticates and retries once a request whose token etcd
// rejected. It runs inside clientv3's retry interceptor, once per attempt.
func (a *tokenAuth) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == authenticateMethod {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	gen := a.generation()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil || !tokenRejected(err) {
		return err
	}
	if aerr := a.authenticate(ctx, gen); aerr != nil {
		return fmt.Errorf("re-authenticating as %q after %v: %w", a.user, err, aerr)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// stale is called when etcd cancelled a watch for its token: the next
// request (each watch attempt starts with one) gets a new token.
func (a *tokenAuth) stale(ctx context.Context) error {
	return a.authenticate(ctx, a.generation())
}
