package main

import (
	"github.com/csi-libstorage/csi-libstorage/internal/units"

	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

// JSON output is the protojson rendering of the response with the CSI
// spec's field names (volume_id, capacity_bytes); as protojson does, 64-bit
// integers are strings and unset fields are left out.
var protoJSONOptions = protojson.MarshalOptions{UseProtoNames: true}

// protoJSON renders m; a nil message renders as null.
func protoJSON(m proto.Message) (json.RawMessage, error) {
	if m == nil || !m.ProtoReflect().IsValid() {
		return json.RawMessage("null"), nil
	}
	b, err := protoJSONOptions.Marshal(m)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}

// structured reports whether the output is data (json or yaml) rather
// than a table for people.
func (c *client) structured() bool { return c.g.output != "table" }

// writeJSON writes v as one document: indented JSON, or with -o yaml the
// same document in YAML. Going through encoding/json also normalises
// protojson's deliberately unstable spacing.
func (c *client) writeJSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	out := buf.Bytes()
	if c.g.output == "yaml" {
		var err error
		if out, err = jsonToYAML(out); err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
	}
	_, err := c.out.Write(out)
	return err
}

// jsonToYAML re-renders a JSON document as block-style YAML, keeping the
// order of keys and the types of values: JSON is YAML, so the document is
// read as a YAML node tree and only its styles are changed. A string that
// would read back as another type ("123", "true") stays quoted.
func jsonToYAML(js []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(js, &n); err != nil {
		return nil, err
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// emit writes the response m: as JSON or YAML with -o json or yaml, else as the table
// that fill draws.
func (c *client) emit(m proto.Message, fill func(t *table)) error {
	if c.structured() {
		raw, err := protoJSON(m)
		if err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		return c.writeJSON(raw)
	}
	return c.table(fill)
}

func (c *client) table(fill func(t *table)) error {
	t := &table{tw: tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)}
	fill(t)
	return t.tw.Flush()
}

// table is an aligned plain-text table.
type table struct{ tw *tabwriter.Writer }

var cellCleaner = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

func (t *table) row(cols ...string) {
	for i, s := range cols {
		cols[i] = cellCleaner.Replace(s)
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

// dash stands in for an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtMap renders a map as sorted k=v pairs.
func fmtMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return dash(strings.Join(keys, ","))
}

func fmtTopologies(ts []*csi.Topology) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, "{"+fmtMap(t.GetSegments())+"}")
	}
	return dash(strings.Join(parts, " "))
}

func fmtCapacity(n int64) string {
	if n == 0 {
		return "-"
	}
	return units.Human(n)
}

func fmtSource(s *csi.VolumeContentSource) string {
	switch {
	case s.GetSnapshot() != nil:
		return "snapshot " + s.GetSnapshot().GetSnapshotId()
	case s.GetVolume() != nil:
		return "volume " + s.GetVolume().GetVolumeId()
	}
	return "-"
}
