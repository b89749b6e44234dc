package api

import (
	"strings"
	"testing"
)

// An over-long value is cut in messages: a 100 KB name gives an error of
// a few hundred bytes, not the name twice.
func TestLongValuesAreCut(t *testing.T) {
	long := strings.Repeat("a", 100_000)
	for _, doc := range []string{
		"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: " + long + "}\nspec: {cidr: 10.9.0.0/16}\n",
		"apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerIP: 10.0.0.1, asNumber: " + strings.Repeat("9", 100_000) + "}\n",
	} {
		_, err := DecodeAll([]byte(doc), "in.yaml", DecodeOptions{})
		if err == nil {
			t.Fatal("accepted")
		}
		if n := len(err.Error()); n > 1000 {
			t.Errorf("error of %d bytes: %.300s", n, err)
		}
		if !strings.Contains(err.Error(), "more bytes)") {
			t.Errorf("the cut is not shown: %.300s", err)
		}
	}
	// Many problems: the first ones are listed, the rest counted.
	var l ErrorList
	for range 1000 {
		l = append(l, &FieldError{Field: "spec.x", Msg: "bad"})
	}
	if s := l.Error(); len(s) > 2000 || !strings.Contains(s, "and 980 more problems") {
		t.Errorf("list of 1000 problems: %d bytes: %.200s", len(s), s)
	}
}

// A datastore value that is not an object of the key's kind is reported
// as such, not as the fields decoding it would find missing.
func TestDecodeJSONWrongKind(t *testing.T) {
	for _, tc := range []struct {
		data string
		want string
	}{
		{`{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","spec":{"peerIP":"10.0.0.1","asNumber":64512}}`, `kind="BGPPeer": the value is a BGPPeer, not an IPPool`},
		{`null`, "the value is null, not an IPPool object"},
		{`[1,2]`, "the value is a JSON list, not an IPPool object"},
		{`"10.0.0.0/8"`, "the value is a JSON string, not an IPPool object"},
		{`{"kind":5}`, "kind: must be a string"},
	} {
		_, err := DecodeJSON(KindIPPool, []byte(tc.data), DecodeOptions{AllowUnknownFields: true})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.data, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "required") {
			t.Errorf("%s: reported as a missing field: %v", tc.data, err)
		}
	}
}
