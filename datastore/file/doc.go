// Package file is the file backend of datastore.Datastore: Roost's embedded
// default for single hosts and tests.
//
// The store is a YAML file, or a directory of *.yaml, *.yml and *.json files
// (not recursive, read in name order; hidden files and editor leftovers
// such as ".foo.swp", "foo~" and "#foo#" are ignored). The documents are
// the projectcalico.org/v3 resources `calicoctl apply -f` takes, lists
// included, plus Roost's IPAM kinds (BlockAffinity, IPAMBlock, IPAMHandle).
// Every object is known by its Calico etcd key (datastore.KeyFor), so users
// see the same keys, prefixes, errors and events as with the etcd backend.
//
// # Reading
//
// An invalid document is logged (file, document, item, line and the error,
// which names kind, name and field). When the object it was meant to be
// can be told — kind and name, or node and cidr for a BlockAffinity, cidr
// for an IPAMBlock — that object is present and broken, as a key holding
// an undecodable value is in etcd: Get returns a *datastore.DecodeError,
// List reports it in Invalid (not in KVs) and watchers get a Broken event,
// at a fresh start as well as when an edit breaks it. Nothing is kept of
// its last good value: consumers decide what depends on it. The other
// documents of the file still load. Where the same key is defined twice,
// the later definition in file order wins, valid or not, and a warning
// names both places.
//
// A document whose object cannot be told is skipped. It may have been any
// object, so, as with a file that cannot be parsed to its end (a YAML or
// JSON syntax error) or cannot be read, the objects the file defined
// before and no longer defines readably are never deleted: they are
// present and broken until the file is fixed. (At a fresh start the store
// cannot know what such a file held before.) A file that cannot be parsed
// is not rewritten, and no write may touch an object its file lost: those
// writes fail and say why.
//
// Writes treat a broken object as existing, as etcd does: Create fails,
// Update (also with its revision) replaces the broken document and Delete
// removes it.
//
// Values are what the files hold, defaults applied. As with etcd, only an
// IPAM record's spec is compared and stored in etcd's form, so an IPAM
// document's metadata (its name, labels) is not part of its identity: a
// file may name a BlockAffinity as it likes, its key comes from spec.node
// and spec.cidr. Returned values are copies the caller may modify.
//
// # Revisions
//
// Revisions live in memory: the store is at revision 1 once loaded, every
// change to an object adds one (a transaction is one revision for all its
// operations, like etcd's), and each object carries the revision it last
// changed at. They start again at 1 when the store is created anew, so a
// revision must not be kept across restarts of the process; Watch treats a
// revision it has not reached as such a stale one and relists.
//
// # Watching
//
// The directory holding the files is watched with fsnotify (for a single
// file, its directory, so that editors that write a temporary file and
// rename it over the original are seen). Changes are debounced (~50ms),
// the changed files re-read and diffed against memory: an object gets an
// Added, Modified (only when its stored encoding really changed) or Deleted
// event, each with a new revision. The last 10,000 events are kept so that
// Watch from a recent revision can replay them; an older revision, or a
// watcher that falls more than 10,000 events behind, gets Resync{Relist:
// true}, a full listing as Added events and InSync, instead of ever
// blocking writers.
//
// # Writing
//
// Create, Update, Delete and Txn have the etcd backend's semantics: Create
// fails if the key exists, Update and Delete with a revision > 0 only apply
// if the object is unchanged since, a transaction applies all or nothing and
// its error names the failing key. Values get Calico's defaults and are
// validated first. The store rewrites the files on disk atomically (a
// temporary file renamed over the original): an object read from a file is
// rewritten in that file, new objects go to the file the store was opened
// with, or to roost-state.yaml in the directory. Documents that a write does
// not touch are kept byte for byte; a rewritten document, or a List holding
// a rewritten item, is re-encoded and may lose its formatting and some
// comments. A JSON file stays JSON. A transaction that changes several files
// replaces them one after the other: it is atomic in memory and per file,
// not across files if the machine crashes in between.
//
// A write re-encodes and re-decodes only the documents it touches; its cost
// beyond that is copying and syncing the file's bytes, so a store holding
// tens of thousands of objects in one file still writes in milliseconds.
// A symlinked file is replaced at its target; changes made to the target
// through another directory are only seen when the link's directory sees
// an event too (Kubernetes volumes, which swap a "..data" link, are
// handled).
//
// Your own writes are not reported twice: the store records what it wrote
// before the file system event arrives, and a re-read that finds the same
// bytes changes nothing.
package file
