package cdi

import (
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"
	specs "tags.cncf.io/container-device-interface/specs-go"
)

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // specs-go types always marshal
	}
	return b
}

// YAML is the spec as the CDI library writes it to a .yaml file.
func YAML(s *specs.Spec) ([]byte, error) {
	b, err := yaml.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("cdi: %w", err)
	}
	return append([]byte("---\n"), b...), nil
}
