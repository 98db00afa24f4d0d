package server

import (
	"bytes"
	"unicode/utf8"

	"github.com/mark3labs/mcp-go/mcp"
)

// scanRequest reads the id, method, params.name and params.arguments of a
// JSON-RPC request without decoding it, for the common case only: ASCII
// keys and plain strings without escapes. Anything else (escapes, non-ASCII
// keys, a params that is not an object, unbalanced input) returns ok=false
// and the caller decodes with encoding/json. When it answers, it answers as
// encoding/json would: keys match case-insensitively, a later duplicate
// wins, and the id and arguments are the exact bytes of their values. depth is what
// jsonDepth says of b when b is JSON, found on the same pass (of a body that
// is not, every decoder refuses it before any nesting is decoded).
func scanRequest(b []byte) (req rpcRequest, depth int, ok bool) {
	s := scanner{b: b}
	ok = s.object(func(key []byte) bool {
		switch {
		case named(key, "id"):
			s.space()
			start := s.i
			if !s.value() {
				return false
			}
			req.ID = s.b[start:s.i]
			return true
		case named(key, "method"):
			v, ok := s.plainString()
			req.Method = method(v)
			return ok
		case named(key, "params"):
			s.space()
			if s.i < len(s.b) && s.b[s.i] == 'n' { // null: leaves params as they are
				return s.value()
			}
			return s.object(func(key []byte) bool {
				switch {
				case named(key, "name"):
					v, ok := s.plainString()
					req.Params.Name = string(v)
					return ok
				case named(key, "arguments"):
					s.space()
					start := s.i
					if !s.value() {
						return false
					}
					req.Params.Arguments = s.b[start:s.i]
					return true
				}
				return s.value()
			})
		}
		return s.value()
	})
	s.space()
	return req, s.deepest, ok && s.i == len(s.b)
}

// named reports whether an object key (ASCII: object refuses others)
// matches name as encoding/json matches field names: without regard to case.
func named(key []byte, name string) bool {
	return len(key) == len(name) && bytes.EqualFold(key, []byte(name))
}

type scanner struct {
	b              []byte
	i              int
	depth, deepest int // nesting of arrays and objects: here, and the most seen
}

func (s *scanner) open() {
	s.depth++
	s.deepest = max(s.deepest, s.depth)
}

func (s *scanner) space() {
	for s.i < len(s.b) && isSpace[s.b[s.i]] {
		s.i++
	}
}

// isSpace is JSON's whitespace (RFC 8259 §2); endsLiteral, what may
// follow a number, true, false or null.
var (
	isSpace     = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}
	endsLiteral = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, ',': true, '}': true, ']': true}
)

// method is the method's name, without allocating for the methods the gate
// looks at.
func method(b []byte) string {
	switch string(b) {
	case string(mcp.MethodToolsCall):
		return string(mcp.MethodToolsCall)
	case string(mcp.MethodInitialize):
		return string(mcp.MethodInitialize)
	}
	return string(b)
}

// object walks {"key": value, ...}, handing each key to member, which must
// consume the value. The key is a slice of the input: member must not keep it.
func (s *scanner) object(member func(key []byte) bool) bool {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.open()
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		key, ok := s.plainString()
		if !ok || !ascii(key) {
			return false
		}
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		if !member(key) {
			return false
		}
		s.space()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.space()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// plainString reads a string without escapes, in valid UTF-8 (which
// encoding/json would otherwise rewrite). It returns a slice of the input.
func (s *scanner) plainString() ([]byte, bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	ascii := true
	for j := start; ; {
		if j += plainRun(s.b[j:]); j >= len(s.b) {
			return nil, false
		}
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], ascii || utf8.Valid(s.b[start:j])
		case c >= utf8.RuneSelf:
			ascii = false
			j++
		default: // an escape or a control character
			return nil, false
		}
	}
}

// value skips one JSON value of any kind, strings with escapes included.
// It checks balance, not grammar: what it lets through that is not JSON,
// mcp-go refuses as a parse error and the policy engine as arguments.
func (s *scanner) value() bool {
	s.space()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		return s.skipString()
	case '{', '[':
		outside := s.depth
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				s.open()
			case '}', ']':
				if s.depth--; s.depth == outside {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	}
	start := s.i // a number, true, false or null
	for s.i < len(s.b) && !endsLiteral[s.b[s.i]] {
		s.i++
	}
	return s.i > start
}

func (s *scanner) skipString() bool {
	for s.i++; s.i < len(s.b); s.i++ {
		switch s.b[s.i] {
		case '\\':
			s.i++
		case '"':
			s.i++
			return true
		}
	}
	return false
}

func ascii(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
