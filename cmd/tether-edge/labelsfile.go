package main

import (
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/tetherhq/tether/edge"
	"github.com/tetherhq/tether/internal/limitread"
	"github.com/tetherhq/tether/internal/yamlconf"
	"github.com/tetherhq/tether/transport/labels"
)

// maxLabelsFile bounds the labels file.
const maxLabelsFile = 4 << 20

// loadLabelsFile reads the labels file of devices.labels_file.
func loadLabelsFile(path string) ([]edge.LabelRule, error) {
	data, err := limitread.File(path, maxLabelsFile)
	if err != nil {
		return nil, fmt.Errorf("cannot read the labels file: %v", err)
	}
	rules, err := parseLabelsFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return rules, nil
}

// parseLabelsFile reads a labels file: a YAML mapping from device ID globs
// to labels, applied in order (a later entry wins for a key that two
// entries give a device):
//
//	"gw-*": {site: berlin}
//	gw-0042: {rack: r7}
//
// An empty file labels nothing.
func parseLabelsFile(data []byte) ([]edge.LabelRule, error) {
	root, err := yamlconf.Parse(data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, nil
	}
	n := root.Content[0]
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping from device ID globs to labels, such as \"gw-*\": {site: berlin}", n.Line)
	}
	var out []edge.LabelRule
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: a key must be a device ID or glob", k.Line)
		}
		if err := edge.ValidDeviceGlob(k.Value); err != nil {
			return nil, fmt.Errorf("line %d: %v", k.Line, err)
		}
		if v.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("line %d: %s: want labels, such as {site: berlin}", v.Line, k.Value)
		}
		set := labels.Set{}
		for j := 0; j+1 < len(v.Content); j += 2 {
			lk, lv := v.Content[j], v.Content[j+1]
			if lk.Kind != yaml.ScalarNode || lv.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: %s: a label is key: value", lk.Line, k.Value)
			}
			if _, dup := set[lk.Value]; dup {
				return nil, fmt.Errorf("line %d: %s: label %s is given twice", lk.Line, k.Value, lk.Value)
			}
			set[lk.Value] = lv.Value
		}
		if err := set.Validate(); err != nil {
			return nil, fmt.Errorf("line %d: %s: %v", v.Line, k.Value, err)
		}
		out = append(out, edge.LabelRule{Devices: k.Value, Labels: set})
	}
	return out, nil
}
