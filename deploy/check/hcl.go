package check

import (
	"fmt"
	"strconv"
	"strings"
)

// HCL subset: attributes (name = value), blocks (type "label"... { body }),
// values that are strings (with ${...} kept verbatim), heredocs, numbers,
// bools, bare identifiers, lists and objects. Comments: #, // and /* */.
// Function calls and operators are refused, so the parser never silently
// misreads a file.

// Body is a block's content.
type Body struct {
	Attrs  map[string]any
	Blocks []*Block
}

// Block is one nested block.
type Block struct {
	Type   string
	Labels []string
	Body   *Body
	Line   int
}

// Ident is a bare identifier used as a value (null, a variable...).
type Ident string

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

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tPunct
)

type token struct {
	kind tokKind
	text string
	line int
}

func lexHCL(src string) ([]token, error) {
	var toks []token
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated comment", line)
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 4
		case strings.HasPrefix(src[i:], "<<"):
			start := line
			j := i + 2
			indent := false
			if j < len(src) && src[j] == '-' {
				indent = true
				j++
			}
			nl := strings.IndexByte(src[j:], '\n')
			if nl < 0 {
				return nil, fmt.Errorf("line %d: heredoc without a body", line)
			}
			marker := strings.TrimSpace(src[j : j+nl])
			if marker == "" || !isIdent(marker) {
				return nil, fmt.Errorf("line %d: bad heredoc marker %q", line, marker)
			}
			j += nl + 1
			line++
			var lines []string
			closed := false
			for j <= len(src) {
				k := strings.IndexByte(src[j:], '\n')
				var l string
				if k < 0 {
					l, k = src[j:], len(src)-j
				} else {
					l = src[j : j+k]
				}
				j += k + 1
				if strings.TrimSpace(l) == marker {
					closed = true
					break
				}
				lines = append(lines, l)
				line++
				if j > len(src) {
					break
				}
			}
			if !closed {
				return nil, fmt.Errorf("line %d: heredoc %s is never closed", start, marker)
			}
			line++
			if indent {
				lines = dedent(lines)
			}
			text := strings.Join(lines, "\n")
			if len(lines) > 0 {
				text += "\n"
			}
			toks = append(toks, token{tString, text, start})
			i = j
		case c == '"':
			var sb strings.Builder
			j := i + 1
			depth := 0
			for {
				if j >= len(src) || src[j] == '\n' {
					return nil, fmt.Errorf("line %d: unterminated string", line)
				}
				ch := src[j]
				if depth == 0 && ch == '"' {
					break
				}
				switch {
				case ch == '\\' && j+1 < len(src):
					switch src[j+1] {
					case 'n':
						sb.WriteByte('\n')
					case 't':
						sb.WriteByte('\t')
					case '"', '\\':
						sb.WriteByte(src[j+1])
					default:
						return nil, fmt.Errorf("line %d: unknown escape \\%c", line, src[j+1])
					}
					j += 2
					continue
				case strings.HasPrefix(src[j:], "${"):
					depth++
					sb.WriteString("${")
					j += 2
					continue
				case ch == '}' && depth > 0:
					depth--
				}
				sb.WriteByte(ch)
				j++
			}
			toks = append(toks, token{tString, sb.String(), line})
			i = j + 1
		case strings.ContainsRune("={}[],:", rune(c)):
			toks = append(toks, token{tPunct, string(c), line})
			i++
		case c == '-' || (c >= '0' && c <= '9'):
			j := i + 1
			for j < len(src) && (src[j] == '.' || (src[j] >= '0' && src[j] <= '9')) {
				j++
			}
			toks = append(toks, token{tNumber, src[i:j], line})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && (isIdentStart(src[j]) || src[j] == '-' || src[j] == '.' || (src[j] >= '0' && src[j] <= '9')) {
				j++
			}
			toks = append(toks, token{tIdent, src[i:j], line})
			i = j
		default:
			return nil, fmt.Errorf("line %d: unexpected %q (this parser reads a subset of HCL: no operators or function calls)", line, c)
		}
	}
	return append(toks, token{tEOF, "", line}), nil
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isIdentStart(s[i]) && !(i > 0 && s[i] >= '0' && s[i] <= '9') {
			return false
		}
	}
	return s != ""
}

func dedent(lines []string) []string {
	min := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " \t"))
		if min < 0 || n < min {
			min = n
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) >= min && min > 0 {
			l = l[min:]
		}
		out[i] = l
	}
	return out
}

type hclParser struct {
	toks []token
	pos  int
}

// ParseHCL parses src into its top-level body.
func ParseHCL(src string) (*Body, error) {
	toks, err := lexHCL(src)
	if err != nil {
		return nil, err
	}
	p := &hclParser{toks: toks}
	b, err := p.body(false)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (p *hclParser) peek() token { return p.toks[p.pos] }
func (p *hclParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *hclParser) body(nested bool) (*Body, error) {
	b := &Body{Attrs: map[string]any{}}
	for {
		t := p.next()
		switch {
		case t.kind == tEOF:
			if nested {
				return nil, fmt.Errorf("line %d: a block is never closed", t.line)
			}
			return b, nil
		case t.kind == tPunct && t.text == "}":
			if !nested {
				return nil, fmt.Errorf("line %d: unexpected }", t.line)
			}
			return b, nil
		case t.kind != tIdent:
			return nil, fmt.Errorf("line %d: expected an attribute or block name, got %q", t.line, t.text)
		}
		if n := p.peek(); n.kind == tPunct && n.text == "=" {
			p.next()
			if _, dup := b.Attrs[t.text]; dup {
				return nil, fmt.Errorf("line %d: attribute %s is set twice", t.line, t.text)
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			b.Attrs[t.text] = v
			continue
		}
		blk := &Block{Type: t.text, Line: t.line}
		for {
			n := p.next()
			if n.kind == tString || n.kind == tIdent {
				blk.Labels = append(blk.Labels, n.text)
				continue
			}
			if n.kind == tPunct && n.text == "{" {
				break
			}
			return nil, fmt.Errorf("line %d: expected { after %s, got %q", n.line, t.text, n.text)
		}
		inner, err := p.body(true)
		if err != nil {
			return nil, err
		}
		blk.Body = inner
		b.Blocks = append(b.Blocks, blk)
	}
}

func (p *hclParser) value() (any, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return t.text, nil
	case tNumber:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: bad number %q", t.line, t.text)
		}
		return f, nil
	case tIdent:
		if n := p.peek(); n.kind == tPunct && n.text == "(" {
			return nil, fmt.Errorf("line %d: function calls are not supported", t.line)
		}
		switch t.text {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return Ident(t.text), nil
	case tPunct:
		switch t.text {
		case "[":
			var l []any
			for {
				if n := p.peek(); n.kind == tPunct && n.text == "]" {
					p.next()
					return l, nil
				}
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				l = append(l, v)
				n := p.next()
				if n.kind == tPunct && n.text == "]" {
					return l, nil
				}
				if n.kind != tPunct || n.text != "," {
					return nil, fmt.Errorf("line %d: expected , or ] in a list, got %q", n.line, n.text)
				}
			}
		case "{":
			m := map[string]any{}
			for {
				k := p.next()
				if k.kind == tPunct && k.text == "}" {
					return m, nil
				}
				if k.kind == tPunct && k.text == "," {
					continue
				}
				if k.kind != tIdent && k.kind != tString {
					return nil, fmt.Errorf("line %d: expected an object key, got %q", k.line, k.text)
				}
				if s := p.next(); s.kind != tPunct || (s.text != "=" && s.text != ":") {
					return nil, fmt.Errorf("line %d: expected = after key %s", s.line, k.text)
				}
				v, err := p.value()
				if err != nil {
					return nil, err
				}
				m[k.text] = v
			}
		}
	}
	return nil, fmt.Errorf("line %d: expected a value, got %q", t.line, t.text)
}
