package api

import (
	"strings"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// calicoctl reads YAML through sigs.k8s.io/yaml, which parses YAML 1.1
// (go-yaml v2) and, where the Go field is a string, stores the scalar's
// value formatted back as text: unquoted yes/on/true become "true",
// no/off/false "false", 0777 "511", 1.10 "1.1". Roost parses YAML 1.2
// (yaml.v3), where yes stays "yes" and true is a boolean. So that a label
// means in Roost what it means in Calico, string fields and map keys take
// the value calicoctl would store. The library itself gives the answer:
// its conversion rules (int, float32 formatting, bools) are not restated.

// yaml11String returns the string calicoctl stores for scalar n in a
// string-typed field (key false) or as a map key (key true). ok is false
// when calicoctl cannot read the value at all (say .inf).
func yaml11String(n *yaml.Node, key bool) (s string, ok bool) {
	if n.Tag == "!!str" && (n.Style != 0 || !maybeYAML11NonString(n.Value)) {
		return n.Value, true
	}
	// A plain scalar (the only kind that gets here from YAML; JSON gives
	// bool and number literals) reads back as itself in a one-line
	// mapping: plain scalars hold no ": " nor " #".
	var text string
	if key {
		text = n.Value + ": x\n"
	} else {
		text = "v: " + n.Value + "\n"
	}
	var m map[string]string
	if err := sigsyaml.Unmarshal([]byte(text), &m); err != nil || len(m) != 1 {
		return n.Value, false
	}
	for k, v := range m {
		if key {
			return k, true
		}
		return v, true
	}
	return n.Value, false
}

// maybeYAML11NonString reports whether a plain scalar could be a bool,
// number or null in YAML 1.1 (the cheap test that spares most strings the
// round trip through the library).
func maybeYAML11NonString(v string) bool {
	if v == "" {
		return false
	}
	if strings.ContainsRune("0123456789+-.~", rune(v[0])) {
		return true // a number, .inf, .nan, ~ (the library decides)
	}
	return yaml11Words[v]
}

// yaml11Words are the plain scalars made of letters that YAML 1.1 reads as
// booleans or null.
var yaml11Words = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range []string{"y", "yes", "n", "no", "true", "false", "on", "off", "null"} {
		m[w] = true
		m[strings.ToUpper(w)] = true
		m[strings.ToUpper(w[:1])+w[1:]] = true
	}
	return m
}()

// yaml11Changes reports whether the string s, written unquoted, would read
// back as something else in YAML 1.1 (calicoctl, and Roost since it reads
// as calicoctl does): "y", "on", "0777". yaml.v3 quotes only what YAML 1.2
// resolves, so the writer keeps these quoted.
func yaml11Changes(s string) bool {
	if !maybeYAML11NonString(s) {
		return false
	}
	got, ok := yaml11String(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: s}, false)
	return !ok || got != s
}
