package server

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/net/http/httpguts"
)

// FuzzBearerChallenge: whatever the values, bearerChallenge writes a
// WWW-Authenticate value without control characters that net/http accepts
// and that parses back (RFC 7235 §2.1, RFC 6750 §3) to exactly the names
// given, with the values minus the characters it removes.
func FuzzBearerChallenge(f *testing.F) {
	for _, seed := range [][2]string{
		{"images:write", "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"},
		{"", ""},
		{"a b", `x", error="forged`},
		{"\r\nSet-Cookie: a=b", "\x00\x7f\\\"\t"},
		{"é ünïcode ✓", "\xff\xfe invalid UTF-8"},
		{"scope\u2028sep", `\"\\`},
	} {
		f.Add(seed[0], seed[1])
	}

	f.Fuzz(func(t *testing.T, scope, metadata string) {
		names := []string{"error", "scope", "resource_metadata"}
		values := []string{"insufficient_scope", scope, metadata}
		params := make([][2]string, len(names))
		for i := range names {
			params[i] = [2]string{names[i], values[i]}
		}
		got := bearerChallenge(params)

		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("control byte %#x at %d in %q", c, i, got)
			}
		}
		for _, r := range got {
			if unicode.IsControl(r) {
				t.Fatalf("control character %U in %q", r, got)
			}
		}
		if !httpguts.ValidHeaderFieldValue(got) {
			t.Fatalf("not a valid header field value: %q", got)
		}
		w := httptest.NewRecorder()
		w.Header().Set("WWW-Authenticate", got)
		if h := w.Result().Header.Get("WWW-Authenticate"); h != got {
			t.Fatalf("the header reads back as %q, not %q", h, got)
		}

		parsed, err := parseBearerChallenge(got)
		if err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		if len(parsed) != len(names) {
			t.Fatalf("%q parses to %d parameters, want %d: %q", got, len(parsed), len(names), parsed)
		}
		for i, p := range parsed {
			if p[0] != names[i] {
				t.Errorf("parameter %d is named %q, want %q", i, p[0], names[i])
			}
			if want := sanitized(values[i]); p[1] != want {
				t.Errorf("%s = %q, want %q (from %q)", names[i], p[1], want, values[i])
			}
		}
	})
}

// sanitized is v without the characters a quoted-string value must not
// carry here: quotes, backslashes and control characters. An invalid UTF-8
// byte becomes U+FFFD, so the header stays valid UTF-8.
func sanitized(v string) string {
	var b strings.Builder
	for _, r := range v {
		if r == '"' || r == '\\' || unicode.IsControl(r) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// parseBearerChallenge is a strict parser of one Bearer challenge whose
// parameters are all quoted strings (RFC 7235 §2.1, RFC 7230 §3.2.6):
//
//	challenge   = "Bearer" [ 1*SP auth-param *( OWS "," OWS auth-param ) ]
//	auth-param  = token BWS "=" BWS quoted-string
//
// It returns the name and unquoted value of each parameter, in order.
func parseBearerChallenge(s string) ([][2]string, error) {
	rest, ok := strings.CutPrefix(s, "Bearer")
	if !ok {
		return nil, errors.New("not a Bearer challenge")
	}
	var out [][2]string
	if rest == "" {
		return out, nil
	}
	if rest[0] != ' ' {
		return nil, errors.New("no space after the scheme")
	}
	rest = strings.TrimLeft(rest, " ")
	for {
		// token
		n := 0
		for n < len(rest) && isTchar(rest[n]) {
			n++
		}
		if n == 0 {
			return nil, errors.New("a parameter without a name")
		}
		name := rest[:n]
		rest = trimOWS(rest[n:])
		if rest == "" || rest[0] != '=' {
			return nil, errors.New("no = after " + name)
		}
		rest = trimOWS(rest[1:])
		// quoted-string
		if rest == "" || rest[0] != '"' {
			return nil, errors.New("the value of " + name + " is not a quoted string")
		}
		var v strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			c := rest[i]
			switch {
			case c == '\\':
				if i+1 == len(rest) || !isQuotedPairChar(rest[i+1]) {
					return nil, errors.New("a bad quoted-pair in " + name)
				}
				i++
				v.WriteByte(rest[i])
			case c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || c >= 0x80:
				v.WriteByte(c)
			default:
				return nil, errors.New("a character not allowed in a quoted string in " + name)
			}
		}
		if i == len(rest) {
			return nil, errors.New("an unterminated quoted string in " + name)
		}
		out = append(out, [2]string{name, v.String()})
		rest = trimOWS(rest[i+1:])
		if rest == "" {
			return out, nil
		}
		if rest[0] != ',' {
			return nil, errors.New("no comma after " + name)
		}
		rest = trimOWS(rest[1:])
	}
}

func isTchar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isQuotedPairChar(c byte) bool { return c == '\t' || c == ' ' || c >= 0x21 && c != 0x7f }

func trimOWS(s string) string { return strings.TrimLeft(s, " \t") }
