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

// after returns the smallest string that sorts (in path order) after s and
// after every string that has s+"/" as a prefix: the seek target that skips
// the subtree rooted at s.
func after(s string) string { return s + "\x00" }

// seek returns the position of the first key >= k (end when none).
func (x *index) seek(k string) pos {
	c := sort.Search(len(x.chunks), func(j int) bool {
		ch := x.chunks[j]
		return pathCompare(ch[len(ch)-1], k) >= 0
	})
	if c == len(x.chunks) {
		return pos{c, 0}
	}
	ch := x.chunks[c]
	i := sort.Search(len(ch), func(j int) bool { return pathCompare(ch[j], k) >= 0 })
	return pos{c, i}
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

// children calls fn once for each distinct name directly under dir (dir
// ends with "/", or is "" for relative keys at the top), in byte order of
// the names, starting at the first name >= from (a prefix of names to
// start at; "" for all) and stopping when a name no longer has the prefix
// from or fn returns false. leaf reports that the key dir+name exists, sub
// that keys exist below dir+name+"/". Cost: O(log n) per name, whatever the
// size of the subtrees.
func (x *index) children(dir, from string, fn func(name string, leaf, sub bool) bool) {
	start := dir + from
	it := x.seek(start)
	for x.valid(it) {
		k := x.at(it)
		if !strings.HasPrefix(k, start) {
			return
		}
		rest := k[len(dir):]
		name, _, deeper := strings.Cut(rest, "/")
		leaf := !deeper
		sub := deeper
		if leaf {
			// The leaf sorts first in its subtree; anything below it follows.
			if n := x.next(it); x.valid(n) {
				nk := x.at(n)
				sub = len(nk) > len(k) && nk[len(k)] == '/' && strings.HasPrefix(nk, k)
			}
		}
		if !fn(name, leaf, sub) {
			return
		}
		if !deeper && !sub {
			it = x.next(it)
		} else {
			it = x.seek(after(dir + name))
		}
	}
}
