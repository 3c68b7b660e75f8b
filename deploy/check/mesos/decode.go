package mesos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Kind names the type of a deploy file.
type Kind string

// The kinds of file under deploy/mesos.
const (
	KindCSIPlugin        Kind = "CSIPluginInfo"
	KindResourceProvider Kind = "ResourceProviderInfo"
	KindDiskProfiles     Kind = "DiskProfileMapping"
	KindModules          Kind = "Modules"
	KindAgentFeatures    Kind = "AgentFeatures"
	KindMarathonApp      Kind = "MarathonApp"
)

// Validator is implemented by every decoded file type.
type Validator interface{ Validate() error }

// DecodeStrict decodes exactly one JSON value into v, refusing unknown
// fields and trailing data.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// DetectKind tells from the top-level keys which file type data holds.
func DetectKind(data []byte) (Kind, error) {
	var top map[string]json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&top); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	has := func(k string) bool { _, ok := top[k]; return ok }
	var typ string
	if raw, ok := top["type"]; ok {
		_ = json.Unmarshal(raw, &typ)
	}
	switch {
	case has("profile_matrix"):
		return KindDiskProfiles, nil
	case has("libraries"):
		return KindModules, nil
	case has("capabilities") && len(top) == 1:
		return KindAgentFeatures, nil
	case has("storage") || typ == SLRPType:
		return KindResourceProvider, nil
	case has("type") && (has("containers") || has("endpoints")):
		return KindCSIPlugin, nil
	case has("id") && (has("cmd") || has("container") || has("instances") || has("args")):
		return KindMarathonApp, nil
	}
	return "", errors.New("unrecognized file: not a CSIPluginInfo, ResourceProviderInfo, DiskProfileMapping, Modules, AgentFeatures or Marathon app")
}

// Decode detects the kind of data and decodes it strictly. It does not
// validate.
func Decode(data []byte) (Kind, Validator, error) {
	kind, err := DetectKind(data)
	if err != nil {
		return "", nil, err
	}
	var v Validator
	switch kind {
	case KindCSIPlugin:
		v = &CSIPluginInfo{}
	case KindResourceProvider:
		v = &ResourceProviderInfo{}
	case KindDiskProfiles:
		v = &DiskProfileMapping{}
	case KindModules:
		v = &Modules{}
	case KindAgentFeatures:
		v = &AgentFeatures{}
	case KindMarathonApp:
		v = &MarathonApp{}
	}
	if err := DecodeStrict(data, v); err != nil {
		return kind, nil, fmt.Errorf("%s: %w", kind, err)
	}
	return kind, v, nil
}

// Load decodes and validates data.
func Load(data []byte) (Kind, Validator, error) {
	kind, v, err := Decode(data)
	if err != nil {
		return kind, nil, err
	}
	if err := v.Validate(); err != nil {
		return kind, v, fmt.Errorf("%s: %w", kind, err)
	}
	return kind, v, nil
}
