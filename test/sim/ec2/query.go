package ec2sim

import (
	"encoding/base64"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// params wraps the decoded Query-protocol form.
type params url.Values

func (p params) str(k string) string { return url.Values(p).Get(k) }

func (p params) has(k string) bool { _, ok := p[k]; return ok }

// int32 parses an optional integer parameter.
func (p params) int32(k string) (val int32, set bool, err *apiError) {
	if !p.has(k) {
		return 0, false, nil
	}
	n, e := strconv.ParseInt(p.str(k), 10, 32)
	if e != nil {
		return 0, true, errf("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected an integer.", p.str(k), lowerFirst(k))
	}
	return int32(n), true, nil
}

func (p params) bool(k string) (bool, *apiError) {
	switch p.str(k) {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	}
	return false, errf("InvalidParameterValue", "Value (%s) for parameter %s is invalid. Expected a boolean.", p.str(k), lowerFirst(k))
}

// indices returns the sorted distinct N of keys "prefix.N" or "prefix.N.…".
func (p params) indices(prefix string) []int {
	seen := map[int]bool{}
	for k := range p {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(num); err == nil && n > 0 {
			seen[n] = true
		}
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// list returns the values of a flattened list "prefix.N".
func (p params) list(prefix string) []string {
	var out []string
	for _, n := range p.indices(prefix) {
		if k := prefix + "." + strconv.Itoa(n); p.has(k) {
			out = append(out, p.str(k))
		}
	}
	return out
}

type tag struct {
	key, value string
	hasValue   bool
}

// tags returns the flattened "prefix.N.Key" / "prefix.N.Value" list.
func (p params) tags(prefix string) []tag {
	var out []tag
	for _, n := range p.indices(prefix) {
		b := prefix + "." + strconv.Itoa(n) + "."
		out = append(out, tag{key: p.str(b + "Key"), value: p.str(b + "Value"), hasValue: p.has(b + "Value")})
	}
	return out
}

// tagSpecs returns the tags of TagSpecification.N for resourceType, and an
// error for specifications naming another resource type.
func (p params) tagSpecs(resourceType string) ([]tag, *apiError) {
	var out []tag
	for _, n := range p.indices("TagSpecification") {
		b := "TagSpecification." + strconv.Itoa(n)
		if rt := p.str(b + ".ResourceType"); rt != resourceType {
			return nil, errf("InvalidParameterValue", "'%s' is not a valid taggable resource type for this operation.", rt)
		}
		out = append(out, p.tags(b+".Tag")...)
	}
	return out, validateTags(out)
}

func validateTags(ts []tag) *apiError {
	if len(ts) > 50 {
		return errf("TagLimitExceeded", "The maximum number of Tags for a resource has been reached.")
	}
	for _, t := range ts {
		switch {
		case t.key == "":
			return errf("InvalidParameterValue", "Tag key cannot be empty.")
		case len(t.key) > 128:
			return errf("InvalidParameterValue", "Tag key exceeds the maximum length of 128 characters.")
		case len(t.value) > 256:
			return errf("InvalidParameterValue", "Tag value exceeds the maximum length of 256 characters.")
		case strings.HasPrefix(strings.ToLower(t.key), "aws:"):
			return errf("InvalidParameterValue", "Tag keys starting with 'aws:' are reserved for internal use")
		}
	}
	return nil
}

type filter struct {
	name   string
	values []string
}

func (p params) filters() []filter {
	var out []filter
	for _, n := range p.indices("Filter") {
		b := "Filter." + strconv.Itoa(n)
		out = append(out, filter{name: p.str(b + ".Name"), values: p.list(b + ".Value")})
	}
	return out
}

// fieldFunc returns the values a resource has for a filter name, and
// whether the filter name is supported.
type fieldFunc func(name string) (values []string, known bool)

// matchFilters reports whether a resource matches all filters (values of
// one filter are ORed; filters are ANDed). An unsupported filter name is an
// InvalidParameterValue error.
func matchFilters(fs []filter, fields fieldFunc) (bool, *apiError) {
	for _, f := range fs {
		have, known := fields(f.name)
		if !known {
			return false, errf("InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
		ok := false
		for _, want := range f.values {
			for _, h := range have {
				if glob(want, h) {
					ok = true
				}
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// tagFields resolves "tag:KEY", "tag-key" and "tag-value" against tags.
func tagFields(name string, tags map[string]string) ([]string, bool) {
	if k, ok := strings.CutPrefix(name, "tag:"); ok {
		if v, ok := tags[k]; ok {
			return []string{v}, true
		}
		return nil, true
	}
	switch name {
	case "tag-key":
		return sortedKeys(tags), true
	case "tag-value":
		var vs []string
		for _, v := range tags {
			vs = append(vs, v)
		}
		return vs, true
	}
	return nil, false
}

// glob matches EC2 filter wildcards: '*' any run, '?' one character,
// backslash escapes the next character.
func glob(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch c := pattern[0]; c {
	case '*':
		for i := 0; i <= len(s); i++ {
			if glob(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && glob(pattern[1:], s[1:])
	case '\\':
		if len(pattern) > 1 {
			return s != "" && s[0] == pattern[1] && glob(pattern[2:], s[1:])
		}
	}
	return s != "" && s[0] == pattern[0] && glob(pattern[1:], s[1:])
}

// page applies MaxResults/NextToken to ids (sorted in place). The token is
// the opaque encoding of the last id returned.
func (p params) page(ids []string, minMax, maxMax int32, explicit bool) (out []string, next string, err *apiError) {
	sort.Strings(ids)
	maxR, set, err := p.int32("MaxResults")
	if err != nil {
		return nil, "", err
	}
	tok := p.str("NextToken")
	if set || tok != "" {
		if explicit {
			return nil, "", errf("InvalidParameterCombination", "The parameter ids cannot be used with the parameter maxResults")
		}
	}
	if set && (maxR < minMax || maxR > maxMax) {
		return nil, "", errf("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. Expecting a value between %d and %d.", maxR, minMax, maxMax)
	}
	if tok != "" {
		last, e := base64.RawURLEncoding.DecodeString(tok)
		if e != nil || len(last) == 0 {
			return nil, "", errf("InvalidPaginationToken", "Invalid pagination token: %s", tok)
		}
		i := sort.SearchStrings(ids, string(last)+"\x00")
		ids = ids[i:]
	}
	if set && int(maxR) < len(ids) {
		ids = ids[:maxR]
		next = base64.RawURLEncoding.EncodeToString([]byte(ids[len(ids)-1]))
	}
	return ids, next, nil
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func xmlTags(m map[string]string) xmlTagSet {
	var ts xmlTagSet
	for _, k := range sortedKeys(m) {
		ts.Items = append(ts.Items, xmlTag{Key: k, Value: m[k]})
	}
	return ts
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// describe selects the ids a Describe* call returns: the ones named by
// idKey.N (each must exist; no paging then) or all of them, narrowed by
// scope and by Filter.N, then paged with MaxResults up to maxMax.
func describe[T any](p params, idKey string, maxMax int32, all map[string]T, lookup func(string) *apiError, fields func(T) fieldFunc, scope func([]string) []string) ([]string, string, *apiError) {
	want := p.list(idKey)
	if len(want) > 0 && (p.has("MaxResults") || p.has("NextToken")) {
		return nil, "", errf("InvalidParameterCombination", "The parameter ids cannot be used with the parameter maxResults")
	}
	var ids []string
	if len(want) > 0 {
		seen := map[string]bool{}
		for _, id := range want {
			if err := lookup(id); err != nil {
				return nil, "", err
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	} else {
		for id := range all {
			ids = append(ids, id)
		}
	}
	if scope != nil {
		ids = scope(ids)
	}
	fs := p.filters()
	if err := tooManyFilterValues(fs); err != nil {
		return nil, "", err
	}
	var matched []string
	for _, id := range ids {
		ok, err := matchFilters(fs, fields(all[id]))
		if err != nil {
			return nil, "", err
		}
		if ok {
			matched = append(matched, id)
		}
	}
	return p.page(matched, 5, maxMax, len(want) > 0)
}
