package api

import (
	"maps"
	"testing"
)

func TestProfileDecodeAndNamespaceLabels(t *testing.T) {
	// A profile as Calico's namespace controller writes it.
	raw := `{"kind":"Profile","apiVersion":"projectcalico.org/v3","metadata":{"name":"kns.prod","uid":"u1","creationTimestamp":"2024-01-02T03:04:05Z"},
"spec":{"ingress":[{"action":"Allow","destination":{}}],"egress":[{"action":"Allow","destination":{}}],
"labelsToApply":{"pcns.projectcalico.org/name":"prod","pcns.team":"a","other":"x"}}}`
	r, err := DecodeJSON(KindProfile, []byte(raw), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := r.(*Profile)
	if len(p.Spec.Ingress) != 1 || len(p.Spec.Egress) != 1 {
		t.Fatalf("rules not kept: %+v", p.Spec)
	}
	for _, tc := range []struct {
		name    string
		ns      string
		profile *Profile
		want    map[string]string
	}{
		{"profile labels without the pcns. prefix, plus the name", "prod", p, map[string]string{"projectcalico.org/name": "prod", "team": "a"}},
		{"no profile: the name only", "dev", nil, map[string]string{"projectcalico.org/name": "dev"}},
		{"metadata labels count too", "x", &Profile{Metadata: ObjectMeta{Labels: map[string]string{"env": "qa"}}}, map[string]string{"projectcalico.org/name": "x", "env": "qa"}},
		{"the name label cannot be overridden", "y", &Profile{Spec: ProfileSpec{LabelsToApply: map[string]string{"pcns.projectcalico.org/name": "z"}}}, map[string]string{"projectcalico.org/name": "y"}},
		{"no namespace: no labels", "", p, map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NamespaceLabels(tc.ns, tc.profile); !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
