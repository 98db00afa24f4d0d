package server

import (
	"strings"
	"unicode/utf8"
)

// scanRequest reads the method, params.name and params.arguments of a
// JSON-RPC request without decoding it, for the common case only: ASCII
// keys and plain strings without escapes. Anything else (escapes, non-ASCII
// keys, a params that is not an object, unbalanced input) returns ok=false
// and the caller decodes with encoding/json. When it answers, it answers as
// encoding/json would: keys match case-insensitively, a later duplicate
// wins, and arguments are the exact bytes of the value.
func scanRequest(b []byte) (req rpcRequest, ok bool) {
	s := scanner{b: b}
	ok = s.object(func(key string) bool {
		switch {
		case strings.EqualFold(key, "method"):
			v, ok := s.plainString()
			req.Method = v
			return ok
		case strings.EqualFold(key, "params"):
			s.space()
			if s.i < len(s.b) && s.b[s.i] == 'n' { // null: leaves params as they are
				return s.value()
			}
			return s.object(func(key string) bool {
				switch {
				case strings.EqualFold(key, "name"):
					v, ok := s.plainString()
					req.Params.Name = v
					return ok
				case strings.EqualFold(key, "arguments"):
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
	return req, ok && s.i == len(s.b)
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// object walks {"key": value, ...}, handing each key to member, which must
// consume the value.
func (s *scanner) object(member func(key string) bool) bool {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
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
			return true
		default:
			return false
		}
	}
}

// plainString reads a string without escapes, in valid UTF-8 (which
// encoding/json would otherwise rewrite).
func (s *scanner) plainString() (string, bool) {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return "", false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return string(s.b[start:j]), utf8.Valid(s.b[start:j])
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
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
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	}
	start := s.i // a number, true, false or null
	for s.i < len(s.b) && !strings.ContainsRune(",}] \t\n\r", rune(s.b[s.i])) {
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

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
