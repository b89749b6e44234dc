package api

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// MarshalJSON encodes a resource as compact JSON with kind and apiVersion,
// the form Calico stores v3 resources in etcd.
func MarshalJSON(r Resource) ([]byte, error) {
	return marshalResource(r.withTypeMeta())
}

// MarshalStored is MarshalJSON without metadata.resourceVersion, which a
// datastore tracks itself (Calico does not store it in the value).
func MarshalStored(r Resource) ([]byte, error) {
	c := r.withTypeMeta()
	c.Meta().ResourceVersion = ""
	return marshalResource(c)
}

// MarshalSpec is the JSON of r's spec with the unknown fields kept under
// it: the stored form of Calico's IPAM records, which are bare specs.
func MarshalSpec(r Resource) ([]byte, error) {
	b, err := MarshalJSON(r)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m["spec"], nil
}

// MarshalYAML encodes resources as a multi-document YAML stream, the form
// `calicoctl get -o yaml` prints and `apply -f` reads back.
func MarshalYAML(rs ...Resource) ([]byte, error) {
	var buf bytes.Buffer
	for i, r := range rs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		b, err := MarshalJSON(r)
		if err != nil {
			return nil, err
		}
		y, err := JSONToYAML(b)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", r.ResourceKind(), r.Meta().Name, err)
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// JSONToYAML converts JSON to block-style YAML, keeping the field order of
// the JSON (kind, apiVersion, metadata, spec) by going through a yaml.Node
// rather than a map.
func JSONToYAML(b []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	setBlockStyle(&n)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func setBlockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Style&yaml.DoubleQuotedStyle != 0 && n.Tag == "!!str" && !yaml11Changes(n.Value) {
		n.Style = 0 // let the encoder quote only where YAML needs it
	}
	if (n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode) && len(n.Content) == 0 {
		n.Style = yaml.FlowStyle // [] and {}
	}
	for _, c := range n.Content {
		setBlockStyle(c)
	}
}

// Clone deep-copies a resource through its JSON form.
func Clone[T Resource](r T) T {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("api.Clone: %v", err)) // our own types always encode
	}
	out := New(r.ResourceKind()).(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(fmt.Sprintf("api.Clone: %v", err))
	}
	copyUnknown(out, r)
	return out
}
