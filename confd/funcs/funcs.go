// Package funcs provides the template functions of confd's templates: the
// key store lookups of memkv, the helpers of kelseyhightower/confd and
// Calico's confd, and (through All) every sprig function.
//
// Store lookups (memkv's, on a kvstore.Store):
//
//	get "/k"                  memkv.KVPair ({{(get "/k").Value}}); error naming the key if absent
//	gets "/a/*/b"             memkv.KVPairs matching a path.Match pattern, sorted by key
//	getv "/k" ["default"]     the value; the default when absent, else an error naming the key
//	getvs "/a/*/b"            the matching values, sorted by value
//	ls "/dir"                 names directly under dir (keys and subdirectories), sorted
//	lsdir "/dir"              names of the subdirectories directly under dir, sorted
//	exists "/k"               whether the key is set
//
// confd's helpers (Go argument order, as confd has them):
//
//	base, dir                 path.Base, path.Dir
//	split s sep, join list sep   strings.Split, strings.Join
//	json s, jsonArray s       decode a JSON object (map[string]any) / array ([]any)
//	map k1 v1 k2 v2 ...       build a map[string]any (keys must be strings)
//	toUpper, toLower          strings.ToUpper, strings.ToLower
//	contains s sub            strings.Contains
//	replace s old new n       strings.Replace (n < 0: all)
//	hasSuffix s suf, trimSuffix s suf
//	base64Encode s, base64Decode s   standard encoding; a bad input is an error
//	fileExists path           whether path can be stat'ed
//	getenv name [default]     the variable; the default when it is unset or empty
//	datetime                  time.Now()
//	parseBool, atoi           strconv.ParseBool, strconv.Atoi
//	reverse list              a reversed copy of any slice (e.g. []string, memkv.KVPairs)
//	sortByLength list         a copy of a []string sorted by length (stable)
//	sortKVByLength pairs      a copy of memkv.KVPairs sorted by key length (stable)
//	seq first last            []int{first, ..., last} (empty when last < first)
//	add, sub, mul, div, mod   int arithmetic; div and mod by zero are errors
//
// Not provided: confd's lookupIP, lookupIPV4, lookupIPV6 and lookupSRV.
// Rendering must not depend on DNS, and nothing leaves this machine.
//
// Name collisions with sprig. In All, confd's function wins for these
// names, because templates written for (Calico's) confd must keep working,
// and sprig's versions take their arguments in another order or return
// other types: get (sprig: dictionary lookup), base, dir, split (sprig:
// returns a map), join (sprig: join sep list), contains (sprig: contains
// sub s), replace (sprig: replace old new s), hasSuffix, trimSuffix (sprig:
// suffix first), reverse, seq (sprig: returns a string), atoi (sprig: no
// error), add, sub, mul, div, mod (sprig: int64 over any numbers). sprig's
// are still reachable under their other names where it has them (e.g.
// splitList, hasPrefix, add1, upper). Note that hasPrefix is sprig's
// (prefix first): neither confd has one.
package funcs

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
	"github.com/kelseyhightower/memkv"

	"github.com/roostnet/roost/confd/kvstore"
)

// Overridden lists the sprig functions that Map's functions replace in All.
var Overridden = []string{
	"add", "atoi", "base", "contains", "dir", "div", "get", "hasSuffix", "join",
	"mod", "mul", "replace", "reverse", "seq", "split", "sub", "trimSuffix",
}

// Map returns confd's template functions, with the store lookups bound to
// store.
func Map(store *kvstore.Store) template.FuncMap {
	return template.FuncMap{
		// memkv
		"get":    store.Get,
		"gets":   store.GetAll,
		"getv":   store.GetValue,
		"getvs":  store.GetAllValues,
		"ls":     store.List,
		"lsdir":  store.ListDir,
		"exists": store.Exists,

		// confd
		"base":           path.Base,
		"dir":            path.Dir,
		"split":          strings.Split,
		"join":           strings.Join,
		"json":           unmarshalObject,
		"jsonArray":      unmarshalArray,
		"map":            createMap,
		"toUpper":        strings.ToUpper,
		"toLower":        strings.ToLower,
		"contains":       strings.Contains,
		"replace":        strings.Replace,
		"hasSuffix":      strings.HasSuffix,
		"trimSuffix":     strings.TrimSuffix,
		"base64Encode":   base64Encode,
		"base64Decode":   base64Decode,
		"fileExists":     fileExists,
		"getenv":         getenv,
		"datetime":       time.Now,
		"parseBool":      strconv.ParseBool,
		"atoi":           strconv.Atoi,
		"reverse":        reverse,
		"sortByLength":   sortByLength,
		"sortKVByLength": sortKVByLength,
		"seq":            seq,
		"add":            func(a, b int) int { return a + b },
		"sub":            func(a, b int) int { return a - b },
		"mul":            func(a, b int) int { return a * b },
		"div":            div,
		"mod":            mod,
	}
}

// All returns sprig's text functions overlaid by Map(store) (confd's names
// win, see the package documentation) and then by each extra map in order.
func All(store *kvstore.Store, extra ...template.FuncMap) template.FuncMap {
	m := template.FuncMap(sprig.TxtFuncMap())
	maps.Copy(m, Map(store))
	for _, e := range extra {
		maps.Copy(m, e)
	}
	return m
}

func unmarshalObject(s string) (map[string]any, error) {
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("json: %q is not a JSON object: %w", abbrev(s), err)
	}
	return v, nil
}

func unmarshalArray(s string) ([]any, error) {
	var v []any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("jsonArray: %q is not a JSON array: %w", abbrev(s), err)
	}
	return v, nil
}

// abbrev shortens a value quoted in an error message.
func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

func createMap(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("map: needs key/value pairs, got %d arguments", len(kv))
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("map: key %d is a %T, not a string", i/2, kv[i])
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

func base64Encode(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func base64Decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("base64Decode: %q: %w", abbrev(s), err)
	}
	return string(b), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func getenv(name string, def ...string) string {
	v := os.Getenv(name)
	if v == "" && len(def) > 0 {
		return def[0]
	}
	return v
}

// reverse returns a reversed copy of any slice, of the same type.
func reverse(list any) (any, error) {
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return nil, fmt.Errorf("reverse: %T is not a list", list)
	}
	n := v.Len()
	out := reflect.MakeSlice(reflect.SliceOf(v.Type().Elem()), n, n)
	if v.Kind() == reflect.Slice {
		out = out.Convert(v.Type()) // keep named slice types (memkv.KVPairs)
	}
	for i := 0; i < n; i++ {
		out.Index(n - 1 - i).Set(v.Index(i))
	}
	return out.Interface(), nil
}

func sortByLength(list []string) []string {
	out := slices.Clone(list)
	slices.SortStableFunc(out, func(a, b string) int { return len(a) - len(b) })
	return out
}

func sortKVByLength(kvs memkv.KVPairs) memkv.KVPairs {
	out := slices.Clone(kvs)
	slices.SortStableFunc(out, func(a, b memkv.KVPair) int { return len(a.Key) - len(b.Key) })
	return out
}

func seq(first, last int) []int {
	if last < first {
		return []int{}
	}
	out := make([]int, 0, last-first+1)
	for i := first; i <= last; i++ {
		out = append(out, i)
	}
	return out
}

func div(a, b int) (int, error) {
	if b == 0 {
		return 0, fmt.Errorf("div: %d / 0", a)
	}
	return a / b, nil
}

func mod(a, b int) (int, error) {
	if b == 0 {
		return 0, fmt.Errorf("mod: %d %% 0", a)
	}
	return a % b, nil
}
