package mesos

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
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
// fields and trailing data. Field names must match exactly: encoding/json
// matches them case-insensitively, but Mesos and Marathon do not, so
// "containerpath" would be taken for "containerPath" here and ignored or
// refused there.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	return exactKeys(raw, reflect.TypeOf(v), "")
}

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

// exactKeys reports the first object key in raw that names no field of t
// by its exact JSON name.
func exactKeys(raw any, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := raw.(map[string]any)
		if !ok {
			return nil // a type mismatch is the decoder's to report
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			if name != "-" && f.IsExported() {
				fields[name] = f.Type
			}
		}
		for k, v := range obj {
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("json: unknown field %q at %s (field names are case-sensitive)", k, strings.TrimPrefix(at, "."))
			}
			if err := exactKeys(v, ft, at+"."+k); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := raw.([]any)
		if !ok {
			return nil
		}
		for i, v := range arr {
			if err := exactKeys(v, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := raw.(map[string]any)
		if !ok {
			return nil
		}
		for k, v := range obj {
			if err := exactKeys(v, t.Elem(), at+"."+k); err != nil {
				return err
			}
		}
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
