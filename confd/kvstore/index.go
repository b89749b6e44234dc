package kvstore

import (
	"sort"
	"strings"
)

// index is an ordered set of keys. Keys are kept in "path order": byte-wise
// lexicographic order in which '/' sorts before every other byte. In that
// order a key is immediately followed by every key below it ("/a/b", then
// "/a/b/c", "/a/b/d/e", ...) and only then by its siblings ("/a/b-x"), so
// the keys of one directory subtree are one contiguous run, which lets
// directory listings skip a whole subtree with a single seek.
//
// Storage is a list of sorted chunks of at most maxChunk keys. A lookup is
// two binary searches (O(log n)); an insert or delete also moves at most
// maxChunk keys inside one chunk and, once every ~maxChunk/2 inserts, the
// chunk list itself (n/maxChunk pointers): effectively O(log n) for the
// store sizes Roost sees, and far more cache-friendly than a pointer tree.
type index struct {
	chunks [][]string
	n      int
}

const (
	maxChunk = 512
	minChunk = maxChunk / 4
)

// pos is a position in the index: chunk and offset inside it.
type pos struct{ c, i int }

// rank gives the sort weight of a byte in path order.
func rank(b byte) int {
	switch {
	case b == '/':
		return 0
	case b < '/':
		return int(b) + 1
	}
	return int(b)
}

// pathCompare compares a and b in path order.
func pathCompare(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return rank(a[i]) - rank(b[i])
		}
	}
	return len(a) - len(b)
}

// seek returns the position of the first key >= k (end when none).
func (x *index) seek(k string) pos {
	return x.seekFrom(pos{}, func(key string) bool { return pathCompare(key, k) >= 0 })
}

// seekFrom returns the first position at or after from whose key satisfies
// ge, which must be monotone (false, ..., false, true, ..., true) over the
// keys from there on. It searches from's chunk first, so short forward
// hops (the usual case when walking a directory) cost O(log maxChunk).
func (x *index) seekFrom(from pos, ge func(k string) bool) pos {
	c := from.c
	if c >= len(x.chunks) {
		return pos{len(x.chunks), 0}
	}
	if ch := x.chunks[c]; !ge(ch[len(ch)-1]) {
		// Not in this chunk: find the first later chunk whose last key
		// satisfies ge, trying the next one before a binary search.
		c++
		if c < len(x.chunks) && !ge(x.chunks[c][len(x.chunks[c])-1]) {
			first := c + 1
			c = first + sort.Search(len(x.chunks)-first, func(j int) bool {
				ch := x.chunks[first+j]
				return ge(ch[len(ch)-1])
			})
		}
		if c == len(x.chunks) {
			return pos{c, 0}
		}
		from.i = 0
	}
	// Gallop forward from from.i (the target is usually a few keys away,
	// in keys that sit close in memory), then binary-search the last step.
	ch := x.chunks[c]
	lo, step := from.i, 1
	for lo+step < len(ch) && !ge(ch[lo+step]) {
		lo += step
		step *= 2
	}
	if lo < len(ch) && ge(ch[lo]) {
		return pos{c, lo}
	}
	hi := min(lo+step, len(ch)-1) // ge(ch[hi]) holds: the chunk's last key satisfies ge
	i := lo + 1 + sort.Search(hi-lo-1, func(j int) bool { return ge(ch[lo+1+j]) })
	return pos{c, i}
}

// find looks for the key a+b at or after from without building it.
func (x *index) find(from pos, a, b string) (pos, string, bool) {
	p := x.seekFrom(from, func(k string) bool { return compareConcat(k, a, b) >= 0 })
	if x.valid(p) {
		if k := x.at(p); len(k) == len(a)+len(b) && compareConcat(k, a, b) == 0 {
			return p, k, true
		}
	}
	return p, "", false
}

// compareConcat is pathCompare(k, a+b) without the concatenation.
func compareConcat(k, a, b string) int {
	if len(k) < len(a) {
		if c := pathCompare(k, a[:len(k)]); c != 0 {
			return c
		}
		return -1
	}
	if c := pathCompare(k[:len(a)], a); c != 0 {
		return c
	}
	return pathCompare(k[len(a):], b)
}

// pastSubtree reports whether k sorts after name and everything below it
// (k >= name+"\x00" in path order).
func pastSubtree(k, name string) bool {
	if strings.HasPrefix(k, name) {
		return len(k) > len(name) && k[len(name)] != '/'
	}
	return pathCompare(k, name) > 0
}

func (x *index) valid(p pos) bool { return p.c < len(x.chunks) }
func (x *index) at(p pos) string  { return x.chunks[p.c][p.i] }
func (x *index) next(p pos) pos {
	p.i++
	if p.i == len(x.chunks[p.c]) {
		p.c, p.i = p.c+1, 0
	}
	return p
}

// has reports whether k is in the index.
func (x *index) has(k string) bool {
	p := x.seek(k)
	return x.valid(p) && x.at(p) == k
}

// insert adds k; it reports false when k was already present.
func (x *index) insert(k string) bool {
	if len(x.chunks) == 0 {
		x.chunks = append(x.chunks, []string{k})
		x.n++
		return true
	}
	p := x.seek(k)
	if x.valid(p) && x.at(p) == k {
		return false
	}
	if p.c == len(x.chunks) { // greater than every key: append to the last chunk
		p = pos{len(x.chunks) - 1, len(x.chunks[len(x.chunks)-1])}
	}
	ch := x.chunks[p.c]
	ch = append(ch, "")
	copy(ch[p.i+1:], ch[p.i:])
	ch[p.i] = k
	x.chunks[p.c] = ch
	x.n++
	if len(ch) > maxChunk {
		half := len(ch) / 2
		right := make([]string, len(ch)-half, maxChunk+1)
		copy(right, ch[half:])
		clear(ch[half:])
		x.chunks[p.c] = ch[: half : half*2]
		x.chunks = append(x.chunks, nil)
		copy(x.chunks[p.c+2:], x.chunks[p.c+1:])
		x.chunks[p.c+1] = right
	}
	return true
}

// remove deletes k; it reports false when k was absent.
func (x *index) remove(k string) bool {
	p := x.seek(k)
	if !x.valid(p) || x.at(p) != k {
		return false
	}
	ch := x.chunks[p.c]
	copy(ch[p.i:], ch[p.i+1:])
	ch[len(ch)-1] = ""
	ch = ch[:len(ch)-1]
	x.chunks[p.c] = ch
	x.n--
	switch {
	case len(ch) == 0:
		x.chunks = append(x.chunks[:p.c], x.chunks[p.c+1:]...)
		x.chunks[:len(x.chunks)+1][len(x.chunks)] = nil
	case len(ch) < minChunk && p.c+1 < len(x.chunks) && len(ch)+len(x.chunks[p.c+1]) <= maxChunk:
		x.merge(p.c)
	case len(ch) < minChunk && p.c > 0 && len(ch)+len(x.chunks[p.c-1]) <= maxChunk:
		x.merge(p.c - 1)
	}
	return true
}

// merge joins chunk c+1 into chunk c.
func (x *index) merge(c int) {
	x.chunks[c] = append(x.chunks[c], x.chunks[c+1]...)
	x.chunks = append(x.chunks[:c+1], x.chunks[c+2:]...)
	x.chunks[:len(x.chunks)+1][len(x.chunks)] = nil
}

// forPrefix calls fn for each key with the byte prefix p, in path order,
// until fn returns false.
func (x *index) forPrefix(p string, fn func(k string) bool) {
	for it := x.seek(p); x.valid(it); it = x.next(it) {
		k := x.at(it)
		if !strings.HasPrefix(k, p) || !fn(k) {
			return
		}
	}
}

// entry is one name directly under a directory, as children reports it.
// Its strings are slices of stored keys: no allocation per entry.
type entry struct {
	name    string // the child's name
	leaf    string // the key dir+name, when hasLeaf
	sub     string // dir+name+"/", when hasSub (keys exist below it)
	hasLeaf bool
	hasSub  bool
	at      pos // the first key of the child's subtree
}

// children calls fn once for each distinct name directly under dir (dir
// ends with "/", or is "" for keys not starting with "/"), in byte order
// of the names, from the first name that has the prefix from and until a
// name no longer has it or fn returns false. hint is a position at or
// before dir's first key (pos{} when unknown). Cost: O(log n) for the
// first name, then about O(log maxChunk) per name, whatever the size of
// the subtrees skipped.
func (x *index) children(dir, from string, hint pos, fn func(e *entry) bool) {
	it, _, _ := x.find(hint, dir, from)
	var e entry
	for x.valid(it) {
		k := x.at(it)
		if len(k) < len(dir)+len(from) || k[:len(dir)] != dir || k[len(dir):len(dir)+len(from)] != from {
			return
		}
		rest := k[len(dir):]
		name, _, deeper := strings.Cut(rest, "/")
		subtree := k[:len(dir)+len(name)]
		e = entry{name: name, at: it}
		if deeper {
			e.hasSub, e.sub = true, k[:len(subtree)+1]
		} else {
			e.hasLeaf, e.leaf = true, k
			// The leaf sorts first in its subtree; anything below it follows.
			if n := x.next(it); x.valid(n) {
				if nk := x.at(n); len(nk) > len(k) && nk[len(k)] == '/' && strings.HasPrefix(nk, k) {
					e.hasSub, e.sub = true, nk[:len(k)+1]
				}
			}
		}
		if !fn(&e) {
			return
		}
		if e.hasSub {
			it = x.seekFrom(it, func(k string) bool { return pastSubtree(k, subtree) })
		} else {
			it = x.next(it)
		}
	}
}
