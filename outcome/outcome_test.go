package outcome

import (
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// Every row of the table is an answer a client can act on, and its parts
// agree with each other.
func TestTableRowsAreConsistent(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	for _, o := range Table {
		t.Run(string(o.Code), func(t *testing.T) {
			if !snake.MatchString(string(o.Code)) {
				t.Errorf("code %q is not snake_case", o.Code)
			}
			if o.Answer == "" || http.StatusText(o.Status) == "" {
				t.Errorf("answer %q, status %d", o.Answer, o.Status)
			}
			switch o.Kind {
			case Token:
				// RFC 6750 §3.1: 401 for a bad token; 503 when toolgate cannot check it.
				if o.Status != http.StatusUnauthorized && o.Code != JWKSUnavailable {
					t.Errorf("a token refusal answers %d", o.Status)
				}
			case Gate:
				if o.Status < 400 || o.OAuthError == "" || o.Challenge != "" || o.JSONRPCCode != 0 || o.ToolError {
					t.Errorf("a gate refusal is an HTTP error with an error code and nothing of MCP: %+v", o)
				}
			case Decision:
				mcp := o.Status == http.StatusOK
				if mcp == (o.OAuthError != "") {
					t.Errorf("a decision is answered by MCP (200) or by OAuth (an error code), not both or neither: %+v", o)
				}
				if o.ToolError && o.JSONRPCCode != 0 {
					t.Errorf("a tool result and a JSON-RPC error at once: %+v", o)
				}
			default:
				t.Errorf("kind %q", o.Kind)
			}
			if o.Challenge != "" && o.Challenge != o.OAuthError {
				t.Errorf("challenge %q beside body error %q", o.Challenge, o.OAuthError)
			}
			if o.Code == EvaluationError && o.Level < slog.LevelError {
				t.Errorf("a failed evaluation is a fault to see at ERROR")
			}
			if o.Code == ArgumentsInvalid && o.Level >= slog.LevelWarn {
				t.Errorf("a client's malformed arguments are not toolgate's fault")
			}
			if !Known(o.Code) || Of(o.Code).Code != o.Code {
				t.Errorf("Of(%q) does not find its row", o.Code)
			}
		})
	}
	if Of("no_such_code").Code != InternalError || Known("no_such_code") {
		t.Error("an unknown code must fail closed as internal_error")
	}
}

// docs/http.md shows the table as Markdown renders it.
func TestDocsShowTheTable(t *testing.T) {
	md := Markdown()
	for _, o := range Table {
		if !strings.Contains(md, "| `"+string(o.Code)+"` |") {
			t.Errorf("no row for %s", o.Code)
		}
	}
	if got, want := strings.Count(md, "\n"), len(Table)+2; got != want {
		t.Errorf("%d lines, want %d", got, want)
	}
}
