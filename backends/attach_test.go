package backends

import (
	"errors"
	"testing"
)

func TestCheckAttach(t *testing.T) {
	rw := func(node string, m AccessMode) Attachment { return Attachment{Node: node, Mode: m} }
	ro := func(node string, m AccessMode) Attachment { return Attachment{Node: node, Mode: m, ReadOnly: true} }
	tests := []struct {
		name     string
		modes    []AccessMode
		existing []Attachment
		req      AttachRequest
		done     bool
		err      error
	}{
		{"first attach", nil, nil, AttachRequest{Node: "a", Mode: SingleNodeWriter}, false, nil},
		{"same node again", nil, []Attachment{rw("a", SingleNodeWriter)}, AttachRequest{Node: "a", Mode: SingleNodeWriter}, true, nil},
		{"same node other read-only flag", nil, []Attachment{rw("a", SingleNodeWriter)}, AttachRequest{Node: "a", Mode: SingleNodeWriter, ReadOnly: true}, false, ErrAlreadyExists},
		{"second writer node", nil, []Attachment{rw("a", SingleNodeWriter)}, AttachRequest{Node: "b", Mode: SingleNodeWriter}, false, ErrConflict},
		{"second node read-only but single-node mode", nil, []Attachment{ro("a", SingleNodeReaderOnly)}, AttachRequest{Node: "b", Mode: SingleNodeReaderOnly}, false, ErrConflict},
		{"multi reader", nil, []Attachment{ro("a", MultiNodeReaderOnly)}, AttachRequest{Node: "b", Mode: MultiNodeReaderOnly}, false, nil},
		{"multi reader implies read-only", nil, []Attachment{ro("a", MultiNodeReaderOnly)}, AttachRequest{Node: "b", Mode: MultiNodeReaderOnly, ReadOnly: false}, false, nil},
		{"multi reader after single writer", nil, []Attachment{rw("a", SingleNodeWriter)}, AttachRequest{Node: "b", Mode: MultiNodeReaderOnly}, false, ErrConflict},
		{"single writer: second writer", nil, []Attachment{rw("a", MultiNodeSingleWriter)}, AttachRequest{Node: "b", Mode: MultiNodeSingleWriter}, false, ErrConflict},
		{"single writer: reader beside writer", nil, []Attachment{rw("a", MultiNodeSingleWriter)}, AttachRequest{Node: "b", Mode: MultiNodeSingleWriter, ReadOnly: true}, false, nil},
		{"multi writer", nil, []Attachment{rw("a", MultiNodeMultiWriter)}, AttachRequest{Node: "b", Mode: MultiNodeMultiWriter}, false, nil},
		{"mode the volume was not created for", []AccessMode{SingleNodeWriter}, nil, AttachRequest{Node: "a", Mode: MultiNodeMultiWriter}, false, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Volume{Modes: tt.modes, Attachments: tt.existing}
			done, err := CheckAttach(v, tt.req)
			if done != tt.done || !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("CheckAttach = %v, %v; want %v, %v", done, err, tt.done, tt.err)
			}
		})
	}
}

func TestParseAccessMode(t *testing.T) {
	for m := SingleNodeWriter; m <= SingleNodeMultiWriter; m++ {
		if got, ok := ParseAccessMode(m.String()); !ok || got != m {
			t.Errorf("ParseAccessMode(%q) = %v, %v", m.String(), got, ok)
		}
	}
	if _, ok := ParseAccessMode("AccessMode(99)"); ok {
		t.Error("an unknown mode parsed")
	}
}
