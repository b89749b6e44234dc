package etcd

import (
	"testing"

	"github.com/roostnet/roost/api"
	"github.com/roostnet/roost/datastore"
	"github.com/roostnet/roost/datastore/contract"
	"github.com/roostnet/roost/internal/etcdtest"
)

func TestContract(t *testing.T) {
	e := etcdtest.Start(t)
	cli := e.Client(t)
	contract.Run(t, contract.Harness{
		New: func(t *testing.T) datastore.Datastore {
			wipe(t, cli)
			return newStore(t, e)
		},
		Restart: func(t *testing.T) { e.Restart() },
		Compact: func(t *testing.T) { e.Compact(t) },
		PutInvalid: func(t *testing.T, _ datastore.Datastore, obj api.Resource) {
			key, err := datastore.KeyFor(obj)
			if err != nil {
				t.Fatal(err)
			}
			b, err := datastore.EncodeValue(obj)
			if err != nil {
				t.Fatal(err)
			}
			put(t, cli, key, string(b))
		},
		Reopen: func(t *testing.T, _ datastore.Datastore) datastore.Datastore { return newStore(t, e) },
	})
}
