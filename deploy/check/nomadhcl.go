package check

import (
	"fmt"
	"math/big"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Body is a Nomad file's or block's content, parsed by HCL itself
// (hclparse) and with every attribute evaluated to a plain Go value:
// string, bool, int64 or float64, []any, map[string]any, or nil.
type Body struct {
	Attrs  map[string]any
	Blocks []*Block
	syntax *hclsyntax.Body
	vars   map[string]cty.Value // the file's job variables, by name
}

// Block is one nested block.
type Block struct {
	Type   string
	Labels []string
	Body   *Body
	Line   int
}

// ParseHCL parses a Nomad job or volume file. Nomad's runtime
// interpolations (${node.unique.name}, ${NOMAD_ALLOC_DIR}...) are kept as
// the text they are, as Nomad hands them on; function calls are refused,
// since the checks read only literal values.
func ParseHCL(filename string, src []byte) (*Body, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, diags
	}
	body := f.Body.(*hclsyntax.Body)
	vars, err := jobVars(body)
	if err != nil {
		return nil, err
	}
	return convertBody(body, vars)
}

// jobVars evaluates the defaults of the file's variable blocks, which is
// what `nomad job run` uses for var.NAME when no -var is given. A variable
// without a default stays a ${var.NAME} text, which the checks refuse.
func jobVars(b *hclsyntax.Body) (map[string]cty.Value, error) {
	vars := map[string]cty.Value{}
	for _, blk := range b.Blocks {
		if blk.Type != "variable" || len(blk.Labels) != 1 {
			continue
		}
		if a, ok := blk.Body.Attributes["default"]; ok {
			v, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				return nil, diags
			}
			vars[blk.Labels[0]] = v
		}
	}
	return vars, nil
}

// evalContext is runtimeVars with the job variables in place of var.NAME.
func (b *Body) evalContext(trs []hcl.Traversal) *hcl.EvalContext {
	ctx := runtimeVars(trs)
	if len(b.vars) > 0 {
		if old, ok := ctx.Variables["var"]; ok && old.Type().IsObjectType() {
			m := old.AsValueMap()
			for k, v := range b.vars {
				m[k] = v
			}
			ctx.Variables["var"] = cty.ObjectVal(m)
		}
	}
	return ctx
}

func convertBody(b *hclsyntax.Body, vars map[string]cty.Value) (*Body, error) {
	out := &Body{Attrs: map[string]any{}, syntax: b, vars: vars}
	names := make([]string, 0, len(b.Attributes))
	for n := range b.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := b.Attributes[n]
		v, diags := a.Expr.Value(out.evalContext(a.Expr.Variables()))
		if diags.HasErrors() {
			return nil, diags
		}
		g, err := goValue(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", a.SrcRange, n, err)
		}
		out.Attrs[n] = g
	}
	for _, blk := range b.Blocks {
		body, err := convertBody(blk.Body, vars)
		if err != nil {
			return nil, err
		}
		out.Blocks = append(out.Blocks, &Block{Type: blk.Type, Labels: blk.Labels, Body: body, Line: blk.TypeRange.Start.Line})
	}
	return out, nil
}

// runtimeVars makes every variable the expression refers to evaluate to
// its own ${...} text: node.unique.name becomes "${node.unique.name}".
func runtimeVars(vars []hcl.Traversal) *hcl.EvalContext {
	type tree map[string]any // leaf: string
	roots := map[string]any{}
	for _, tr := range vars {
		text := tr.RootName()
		var steps []string
		for _, s := range tr[1:] {
			a, ok := s.(hcl.TraverseAttr)
			if !ok {
				break // an index: left to fail at evaluation
			}
			steps = append(steps, a.Name)
			text += "." + a.Name
		}
		leaf := "${" + text + "}"
		if len(steps) == 0 {
			roots[tr.RootName()] = leaf
			continue
		}
		t, ok := roots[tr.RootName()].(tree)
		if !ok {
			t = tree{}
			roots[tr.RootName()] = t
		}
		for i, s := range steps {
			if i == len(steps)-1 {
				if _, deeper := t[s].(tree); !deeper {
					t[s] = leaf
				}
				break
			}
			next, ok := t[s].(tree)
			if !ok {
				next = tree{}
				t[s] = next
			}
			t = next
		}
	}
	var toCty func(v any) cty.Value
	toCty = func(v any) cty.Value {
		if s, ok := v.(string); ok {
			return cty.StringVal(s)
		}
		m := map[string]cty.Value{}
		for k, c := range v.(tree) {
			m[k] = toCty(c)
		}
		return cty.ObjectVal(m)
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}}
	for k, v := range roots {
		ctx.Variables[k] = toCty(v)
	}
	return ctx
}

// Decode decodes the body into v with gohcl: an argument or block that v
// does not name is refused, so a misspelt field in a block the checks
// read fails instead of being skipped.
func (b *Body) Decode(v any) error {
	if diags := gohcl.DecodeBody(b.syntax, b.evalContext(bodyVars(b.syntax)), v); diags.HasErrors() {
		return diags
	}
	return nil
}

func bodyVars(b *hclsyntax.Body) []hcl.Traversal {
	var out []hcl.Traversal
	for _, a := range b.Attributes {
		out = append(out, a.Expr.Variables()...)
	}
	for _, blk := range b.Blocks {
		out = append(out, bodyVars(blk.Body)...)
	}
	return out
}

func goValue(v cty.Value) (any, error) {
	if v.IsNull() {
		return nil, nil
	}
	if !v.IsKnown() {
		return nil, fmt.Errorf("value not known until Nomad runs the job")
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return v.AsString(), nil
	case t == cty.Bool:
		return v.True(), nil
	case t == cty.Number:
		bf := v.AsBigFloat()
		if i, acc := bf.Int64(); acc == big.Exact {
			return i, nil
		}
		f, _ := bf.Float64()
		return f, nil
	case t.IsListType() || t.IsTupleType() || t.IsSetType():
		var out []any
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			g, err := goValue(e)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		return out, nil
	case t.IsMapType() || t.IsObjectType():
		out := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			g, err := goValue(e)
			if err != nil {
				return nil, err
			}
			out[k.AsString()] = g
		}
		return out, nil
	}
	return nil, fmt.Errorf("a value of type %s", t.FriendlyName())
}

// BlocksOf returns the direct child blocks of type typ.
func (b *Body) BlocksOf(typ string) []*Block {
	var out []*Block
	for _, c := range b.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

// Find returns every block of type typ at any depth, in file order.
func (b *Body) Find(typ string) []*Block {
	var out []*Block
	for _, c := range b.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
		out = append(out, c.Body.Find(typ)...)
	}
	return out
}

// String returns attribute name as a string ("" if absent or not a string).
func (b *Body) String(name string) string {
	s, _ := b.Attrs[name].(string)
	return s
}

// Bool returns attribute name as a bool.
func (b *Body) Bool(name string) (v, ok bool) {
	v, ok = b.Attrs[name].(bool)
	return v, ok
}

// Strings returns attribute name as a list of strings.
func (b *Body) Strings(name string) []string {
	l, _ := b.Attrs[name].([]any)
	out := make([]string, 0, len(l))
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
