package api

import (
	"strings"
	"testing"
)

// TestApplyKeepsNewerFields: `birdctl get -o yaml | birdctl apply -f -`
// of a resource holding fields Roost does not know: the strict (user
// input) decoding keeps them and writes them back; a close misspelling of
// a known field, a field inside a list and any unknown field of Roost's
// own kinds stay errors.
func TestApplyKeepsNewerFields(t *testing.T) {
	in := "kind: BGPConfiguration\napiVersion: projectcalico.org/v3\nmetadata: {name: default}\n" +
		"spec:\n  asNumber: 64512\n  serviceLoadBalancerAggregation: Disabled\n  futureKnob: {a: [1, 2]}\n"
	c := decodeOne(t, in).(*BGPConfiguration)
	if u := UnknownFields(c); len(u) != 1 || u[0] != "spec.futureKnob" {
		t.Fatalf("unknown fields %v", u)
	}
	y, err := MarshalYAML(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serviceLoadBalancerAggregation: Disabled", "futureKnob:\n    a:\n      - 1\n      - 2"} {
		if !strings.Contains(string(y), want) {
			t.Errorf("written back without %q:\n%s", want, y)
		}
	}
	again := decodeOne(t, string(y))
	if u := UnknownFields(again); len(u) != 1 {
		t.Errorf("second round: unknown fields %v", u)
	}
	for _, bad := range []struct{ in, want string }{
		{"kind: BGPConfiguration\nmetadata: {name: default}\nspec: {asNumbr: 1}\n", `spec.asNumbr: unknown field (did you mean "asNumber"?)`},
		{"kind: BGPFilter\nmetadata: {name: f}\nspec: {exportV4: [{action: Accept, cidr: 10.0.0.0/8, matchOperator: In, futureMatch: 1}]}\n", "spec.exportV4[0].futureMatch: unknown field"},
		{"kind: BFDProfile\napiVersion: roost.io/v1\nmetadata: {name: p}\nspec: {futureTimer: 1}\n", "spec.futureTimer: unknown field"},
	} {
		if _, err := DecodeAll([]byte(bad.in), "t", DecodeOptions{}); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: err = %v, want %q", bad.in, err, bad.want)
		}
	}
}
